package planner

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"knative.dev/serving/pkg/autoscaler/config/autoscalerconfig"
)

// Queue depths Knative puts in front of a revision (not exported upstream):
// queue-proxy's breaker holds 10 x containerConcurrency requests beyond the
// ones in the container (pkg/queue/sharedmain/main.go, queueDepth), the
// activator 10000 per revision (pkg/activator/net/throttler.go,
// breakerQueueDepth). A request beyond them is refused with a 503.
const (
	queueProxyDepthPerSlot = 10
	activatorQueueDepth    = 10000
)

// Epoch is the virtual clock's time zero (the moment the plan starts).
var Epoch = time.Date(2026, time.August, 13, 7, 0, 0, 0, time.UTC)

// Cluster is what the planner assumes about the cluster around the chart.
type Cluster struct {
	// PodStart: from the autoscaler's decision to a Ready pod (scheduling,
	// image pull or cache, the process start of ~10 ms measured by
	// `make bench`, the first readiness probe).
	PodStart time.Duration
	// DBReplicas: PostgreSQL read replicas behind exam_results_ro.
	DBReplicas int
	// PodCPU: cores one pod serves with; 0 uses the chart's
	// resources.requests.cpu; negative: uncapped (the sweep as measured).
	PodCPU float64
	// Step of the simulation (the autoscaler still scrapes every second and
	// decides every TickInterval).
	Step time.Duration
	// Autoscaler is config-autoscaler (NewConfigFromMap of the cluster's
	// ConfigMap; Knative's shipped defaults from an empty map).
	Autoscaler *autoscalerconfig.Config
	// AutoscalerSource says where Autoscaler came from.
	AutoscalerSource string
}

// Second is one row of the per-second table of one function.
type Second struct {
	T               int     `json:"t"`
	Function        string  `json:"function"`
	Demand          float64 `json:"demand"`
	PodsDesired     int     `json:"pods_desired"`
	PodsReady       int     `json:"pods_ready"`
	InflightPerPod  float64 `json:"inflight_per_pod"`
	Queue           float64 `json:"queue"`
	ActivatorInPath bool    `json:"activator_in_path"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	Served          float64 `json:"served"`
	Refused         float64 `json:"refused"`
	TimedOut        float64 `json:"timed_out"`
	PgbClients      int     `json:"pgbouncer_clients"`
	PgbClientsInUse float64 `json:"pgbouncer_clients_in_use"`
	PgbMaxClients   int     `json:"pgbouncer_max_client_conn"`
	ServerConns     float64 `json:"server_connections"`
	MaxConnections  int     `json:"max_connections"`
	DBUtilization   float64 `json:"db_utilization"`
}

// Result is a whole plan.
type Result struct {
	Profile *Profile
	Rows    []Second
	Summary map[string]*Summary // per function
}

// Summary is one function's totals.
type Summary struct {
	Function         string  `json:"function"`
	Requests         float64 `json:"requests"`
	PeakDemand       float64 `json:"peak_demand"`
	Served           float64 `json:"served"`
	Refused          float64 `json:"refused"`
	TimedOut         float64 `json:"timed_out"`
	P50Ms            float64 `json:"p50_ms"`
	P99Ms            float64 `json:"p99_ms"`
	WorstMinuteP99Ms float64 `json:"worst_minute_p99_ms"`
	WorstMinute      int     `json:"worst_minute"`
	MaxPodsReady     int     `json:"max_pods_ready"`
	MaxPodsDesired   int     `json:"max_pods_desired"`
	PodSeconds       float64 `json:"pod_seconds"`
	MaxQueue         float64 `json:"max_queue"`
	MaxPgbClients    int     `json:"max_pgbouncer_clients"`
	PgbMaxClients    int     `json:"pgbouncer_max_client_conn"`
	MaxServerConns   float64 `json:"max_server_connections"`
	MaxConnections   int     `json:"max_connections"`
	MaxDBUtilization float64 `json:"max_db_utilization"`
	PodCPU           float64 `json:"pod_cpu"` // cores one pod served with (0: uncapped)
}

type cohort struct {
	t0 float64 // arrival time, seconds
	n  float64
}

type pod struct{ readyAt float64 }

// revision is one function's revision in the simulation.
type revision struct {
	fn       *Function
	model    *PodModel
	as       *Autoscaler
	clients  int // PgBouncer client connections one pod opens
	pods     []pod
	backlog  []cohort
	want     int32
	zeroAt   float64 // when the (bounded) desired scale first became 0; -1 if not
	inited   bool
	ebc      int32
	poked    bool // stat already recorded for this second by a poke
	share    float64
	secStat  float64 // sum over the second's steps of requests in the revision
	secSteps int

	// per-second and per-minute accumulators
	row       Second
	sumInPod  float64
	sumQueue  float64
	secHist   *histogram
	minHist   *histogram
	totalHist *histogram
	sum       *Summary
}

// Simulate runs a profile against a release.
func Simulate(rel *Release, capacity *Capacity, prof *Profile, cl Cluster, progress func(done, total int)) (*Result, error) {
	step := cl.Step.Seconds()
	if step <= 0 {
		step = 0.1
	}
	stepsPerSec := int(math.Round(1 / step))
	step = 1 / float64(stepsPerSec)
	rng := rand.New(rand.NewPCG(prof.Seed, 0x6578616d))
	res := &Result{Profile: prof, Summary: map[string]*Summary{}}

	var revs []*revision
	shareTotal := 0.0
	for _, name := range prof.SortedFunctions() {
		shareTotal += prof.Functions[name]
	}
	for _, name := range prof.SortedFunctions() {
		fn, ok := rel.Functions[name]
		if !ok {
			return nil, fmt.Errorf("profile %s names %s, which the chart does not render", prof.Name, name)
		}
		cpu := cl.PodCPU
		if cpu == 0 {
			cpu = fn.CPURequest
		}
		if cpu < 0 {
			cpu = 0
		}
		model, err := capacity.Model(name, cpu)
		if err != nil {
			return nil, err
		}
		as, err := NewAutoscaler(fn.PA, fn.Decider, cl.Autoscaler)
		if err != nil {
			return nil, err
		}
		defer as.Close()
		clients := fn.PoolSize
		if fn.ReadFallback {
			clients *= 2
		}
		r := &revision{
			fn: fn, model: model, as: as, clients: clients, zeroAt: -1,
			share:   prof.Functions[name] / shareTotal,
			secHist: newHistogram(), minHist: newHistogram(), totalHist: newHistogram(),
			sum: &Summary{Function: name, WorstMinute: -1, PodCPU: cpu},
		}
		// The revision is Ready with its initial scale before traffic
		// reaches it (bounded like the KPA bounds every scale).
		initial := applyBounds(fn.MinScale, fn.MaxScale, fn.InitialScale)
		r.want = initial
		for i := int32(0); i < initial; i++ {
			r.pods = append(r.pods, pod{readyAt: 0})
		}
		r.inited = true
		revs = append(revs, r)
		res.Summary[name] = r.sum
	}

	pool := rel.Pooler
	maxClients := pool.MaxClientConn * pool.Replicas
	dbCap := map[string]float64{
		"read":  capacity.DBInstanceRPS * float64(max(cl.DBReplicas, 1)),
		"write": capacity.DBInstanceRPS, // the primary
	}
	serverConns := map[string]float64{
		"read":  float64(pool.Replicas * pool.ReadOnlyServerConns),
		"write": float64(pool.Replicas * pool.ReadWriteServerConns),
	}
	grace := cl.Autoscaler.ScaleToZeroGracePeriod
	podStart := cl.PodStart.Seconds()
	total := int(math.Ceil(prof.Duration))
	tick := int(TickInterval.Seconds())

	for sec := 0; sec < total; sec++ {
		for _, r := range revs {
			r.row = Second{T: sec, Function: r.fn.Name, PgbMaxClients: maxClients, MaxConnections: pool.MaxConnections}
			r.sumInPod, r.sumQueue, r.secStat, r.secSteps, r.poked = 0, 0, 0, 0, false
			r.secHist.reset()
		}
		var dbUtil, inUseByClass = 0.0, map[string]float64{}
		for k := 0; k < stepsPerSec; k++ {
			t := float64(sec) + float64(k)*step
			rate := prof.RateAt(t)
			// PgBouncer's client budget: a pod whose pool cannot connect
			// fails its readiness probe (/readyz runs SELECT 1 through PgBouncer).
			budget := maxClients
			type plan struct {
				ready        int
				n, d, kp, sv float64
			}
			plans := make([]plan, len(revs))
			demandByClass := map[string]float64{}
			for i, r := range revs {
				a := poisson(rng, rate*r.share*step)
				for _, sp := range prof.Spikes {
					if sp.At >= t && sp.At < t+step {
						a += sp.Requests * r.share
					}
				}
				r.row.Demand += a
				r.sum.Requests += a
				if a > 0 {
					r.backlog = append(r.backlog, cohort{t0: t, n: a})
				}
				// requests past timeoutSeconds are answered 504 by Knative
				timeout := float64(r.fn.TimeoutSeconds)
				for len(r.backlog) > 0 && t-r.backlog[0].t0 > timeout {
					r.row.TimedOut += r.backlog[0].n
					r.backlog = r.backlog[1:]
				}
				ready := 0
				for _, p := range r.pods {
					if p.readyAt <= t {
						ready++
					}
				}
				if r.clients > 0 {
					ready = min(ready, max(budget, 0)/r.clients)
					budget -= ready * r.clients
				}
				// Scale from zero: the activator holds the request and pokes
				// the autoscaler, which decides at once instead of at its tick.
				if len(r.pods) == 0 && a > 0 && !r.poked {
					now := Epoch.Add(seconds(t))
					r.as.Record(now, backlogSize(r.backlog), a/step)
					r.poked = true
					r.decide(now, t, 0, grace, podStart)
				}
				n := backlogSize(r.backlog)
				kp := float64(ready) * r.model.Throughput(r.slots())
				d := n / step
				plans[i] = plan{ready: ready, n: n, d: d, kp: kp, sv: math.Min(d, kp)}
				demandByClass[r.fn.Access] += plans[i].sv
			}
			for i, r := range revs {
				pl := plans[i]
				served := pl.sv
				dbLimited := false
				if c := dbCap[r.fn.Access]; demandByClass[r.fn.Access] > c {
					served *= c / demandByClass[r.fn.Access]
					dbLimited = true
				}
				if u := math.Min(1, demandByClass[r.fn.Access]/dbCap[r.fn.Access]); u > dbUtil {
					dbUtil = u // the share of the database's capacity in use
				}
				var c float64 // requests in flight per ready pod
				if pl.ready > 0 {
					if !dbLimited && served >= pl.d {
						c = r.model.ConcurrencyFor(served/float64(pl.ready), r.slots())
					} else {
						c = math.Min(r.slots(), pl.n/float64(pl.ready))
					}
				}
				// Time in the pod: the measured curve at c, slowed down when
				// the pod holds more than it serves (waiting for the database).
				p50, p99 := r.model.Latency(c)
				if served > 0 && c > 0 {
					mean := 1000 * float64(pl.ready) * c / served
					if g := mean / r.model.MeanLatencyMs(c); g > 1 {
						p50, p99 = p50*g, p99*g
					}
				}
				r.serve(served*step, t, p50, p99)
				left := backlogSize(r.backlog)
				// Requests the revision cannot hold are refused (503).
				activator := pl.ready == 0 || r.ebc < 0
				cc := float64(r.fn.ContainerConcurrency)
				hold := math.Inf(1)
				if activator {
					hold = activatorQueueDepth
					if cc > 0 {
						hold += float64(pl.ready) * cc
					}
				} else if cc > 0 {
					hold = float64(pl.ready) * cc * (1 + queueProxyDepthPerSlot)
				}
				if excess := left - hold; excess > 0 {
					r.row.Refused += dropNewest(&r.backlog, excess)
					left = hold
				}
				inPods := c * float64(pl.ready)
				waiting := math.Max(0, left-inPods)
				r.secStat += inPods + waiting
				r.secSteps++
				r.sumInPod += c
				r.sumQueue += waiting
				r.row.ActivatorInPath = r.row.ActivatorInPath || activator
				r.row.PodsReady = pl.ready
				inUse := float64(pl.ready) * math.Min(c, float64(r.fn.PoolSize))
				r.row.PgbClientsInUse += inUse / float64(stepsPerSec)
				inUseByClass[r.fn.Access] += inUse / float64(stepsPerSec)
				r.row.PgbClients = max(r.row.PgbClients, pl.ready*r.clients)
			}
		}
		// The second's stat goes to the collector, as the scraper's would;
		// the decider runs every TickInterval.
		now := Epoch.Add(seconds(float64(sec + 1)))
		pgbClients := 0
		for _, r := range revs {
			pgbClients += r.row.PgbClients
		}
		for _, r := range revs {
			if !r.poked || r.secStat > 0 {
				r.as.Record(now, r.secStat/float64(r.secSteps), r.row.Demand)
			}
			if (sec+1)%tick == 0 {
				r.decide(now, float64(sec+1), r.row.PodsReady, grace, podStart)
			}
			row := &r.row
			row.PodsDesired = int(r.want)
			row.InflightPerPod = r.sumInPod / float64(stepsPerSec)
			row.Queue = r.sumQueue / float64(stepsPerSec)
			row.P50Ms = r.secHist.quantile(0.5)
			row.P99Ms = r.secHist.quantile(0.99)
			row.PgbClients = pgbClients
			row.ServerConns = math.Min(inUseByClass[r.fn.Access], serverConns[r.fn.Access])
			row.DBUtilization = dbUtil
			r.account(row)
			res.Rows = append(res.Rows, *row)
		}
		if progress != nil {
			progress(sec+1, total)
		}
	}
	for _, r := range revs {
		r.closeMinute(total)
		r.sum.P50Ms = r.totalHist.quantile(0.5)
		r.sum.P99Ms = r.totalHist.quantile(0.99)
	}
	sort.SliceStable(res.Rows, func(i, j int) bool { return res.Rows[i].T < res.Rows[j].T })
	return res, nil
}

// slots is the number of requests one pod runs at once: containerConcurrency,
// or the sweep's largest concurrency when it is 0 (unlimited).
func (r *revision) slots() float64 {
	if r.fn.ContainerConcurrency > 0 {
		return float64(r.fn.ContainerConcurrency)
	}
	return r.model.MaxConcurrency()
}

// decide runs Knative's decider and applies its answer the way the KPA
// reconciler does: min/max (and initial) scale bounds, scale to zero only
// after the grace period, new pods Ready after the start delay.
func (r *revision) decide(now time.Time, t float64, ready int, grace time.Duration, podStart float64) {
	sr := r.as.Scale(now, ready)
	if !sr.ScaleValid {
		return
	}
	r.ebc = sr.ExcessBurstCapacity
	minScale := r.fn.MinScale
	if r.fn.InitialScale > 1 && !r.inited {
		minScale = max(minScale, r.fn.InitialScale)
	}
	want := applyBounds(minScale, r.fn.MaxScale, sr.DesiredPodCount)
	if want == 0 && len(r.pods) > 0 {
		if r.zeroAt < 0 {
			r.zeroAt = t
		}
		if t-r.zeroAt < grace.Seconds() {
			want = 1
		}
	} else {
		r.zeroAt = -1
	}
	r.want = want
	r.scaleTo(int(want), t+podStart)
}

func (r *revision) scaleTo(n int, readyAt float64) {
	for len(r.pods) < n {
		r.pods = append(r.pods, pod{readyAt: readyAt})
	}
	if len(r.pods) > n {
		// the newest (still starting) pods go first
		sort.SliceStable(r.pods, func(i, j int) bool { return r.pods[i].readyAt < r.pods[j].readyAt })
		r.pods = r.pods[:n]
	}
}

// applyBounds is the KPA's clamp of a desired scale (0 max = unbounded).
func applyBounds(lo, hi, x int32) int32 {
	if x < lo {
		return lo
	}
	if hi != 0 && x > hi {
		return hi
	}
	return x
}

// serve completes n requests from the head of the backlog at time t, each
// taking its wait so far plus a time in the pod drawn from the lognormal
// with the given median and 99th percentile.
func (r *revision) serve(n, t, p50, p99 float64) {
	timeoutMs := 1000 * float64(r.fn.TimeoutSeconds)
	for n > 1e-9 && len(r.backlog) > 0 {
		head := &r.backlog[0]
		take := math.Min(n, head.n)
		wait := 1000 * math.Max(0, t-head.t0)
		sigma := 0.0
		if p99 > p50 && p50 > 0 {
			sigma = math.Log(p99/p50) / 2.3263
		}
		for _, q := range lognormalNodes {
			lat := wait + p50*math.Exp(sigma*q.z)
			w := take * q.w
			if lat > timeoutMs {
				r.row.TimedOut += w
				continue
			}
			r.row.Served += w
			r.secHist.add(lat, w)
			r.minHist.add(lat, w)
			r.totalHist.add(lat, w)
		}
		head.n -= take
		n -= take
		if head.n <= 1e-9 {
			r.backlog = r.backlog[1:]
		}
	}
}

func (r *revision) account(row *Second) {
	s := r.sum
	s.PeakDemand = math.Max(s.PeakDemand, row.Demand)
	s.Served += row.Served
	s.Refused += row.Refused
	s.TimedOut += row.TimedOut
	s.MaxPodsReady = max(s.MaxPodsReady, row.PodsReady)
	s.MaxPodsDesired = max(s.MaxPodsDesired, row.PodsDesired)
	s.PodSeconds += float64(len(r.pods))
	s.MaxQueue = math.Max(s.MaxQueue, row.Queue)
	s.MaxPgbClients = max(s.MaxPgbClients, row.PgbClients)
	s.PgbMaxClients = row.PgbMaxClients
	s.MaxServerConns = math.Max(s.MaxServerConns, row.ServerConns)
	s.MaxConnections = row.MaxConnections
	s.MaxDBUtilization = math.Max(s.MaxDBUtilization, row.DBUtilization)
	if (row.T+1)%60 == 0 {
		r.closeMinute(row.T + 1)
	}
}

func (r *revision) closeMinute(end int) {
	if r.minHist.total == 0 {
		return
	}
	if p99 := r.minHist.quantile(0.99); p99 > r.sum.WorstMinuteP99Ms {
		r.sum.WorstMinuteP99Ms = p99
		r.sum.WorstMinute = (end - 1) / 60
	}
	r.minHist.reset()
}

func backlogSize(b []cohort) float64 {
	n := 0.0
	for _, c := range b {
		n += c.n
	}
	return n
}

// dropNewest removes up to n requests from the tail and returns how many.
func dropNewest(b *[]cohort, n float64) float64 {
	dropped := 0.0
	for n > 1e-9 && len(*b) > 0 {
		last := &(*b)[len(*b)-1]
		take := math.Min(n, last.n)
		last.n -= take
		n -= take
		dropped += take
		if last.n <= 1e-9 {
			*b = (*b)[:len(*b)-1]
		}
	}
	return dropped
}

func seconds(t float64) time.Duration { return time.Duration(t * float64(time.Second)) }

// poisson draws a Poisson count with the given mean (normal approximation
// above 50).
func poisson(rng *rand.Rand, mean float64) float64 {
	if mean <= 0 {
		return 0
	}
	if mean > 50 {
		return math.Max(0, math.Round(mean+math.Sqrt(mean)*rng.NormFloat64()))
	}
	l, k, p := math.Exp(-mean), 0.0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// lognormalNodes split a lognormal into weighted quantile nodes, finer in
// the tail so that the 99th percentile is resolved.
var lognormalNodes = func() []struct{ z, w float64 } {
	edges := []float64{0, .1, .2, .3, .4, .5, .6, .7, .8, .9, .95, .98, .99, .995, .999, 1}
	var out []struct{ z, w float64 }
	for i := 0; i+1 < len(edges); i++ {
		mid := (edges[i] + edges[i+1]) / 2
		out = append(out, struct{ z, w float64 }{math.Sqrt2 * math.Erfinv(2*mid-1), edges[i+1] - edges[i]})
	}
	return out
}()
