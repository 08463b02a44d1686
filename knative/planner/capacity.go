package planner

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SweepPoint is one point of the benchmark's per-instance capacity sweep:
// one function process under wrk with Concurrency requests always in flight
// (.ci/bench/bench.py, sweep_one; the JSON keys are the ones bench.py writes).
type SweepPoint struct {
	Concurrency  float64 `json:"concurrency"`
	RPS          float64 `json:"rps"`
	OtherPassRPS float64 `json:"other_pass_rps,omitempty"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	Errors       float64 `json:"errors"`
	Pool         int     `json:"pool,omitempty"`
	// FunctionCPU is the cores the function process used at this point.
	FunctionCPU float64 `json:"function_cpu,omitempty"`
}

// pgbenchRun is one pgbench run of the point-read scenario through PgBouncer.
type pgbenchRun struct {
	RPS   float64 `json:"rps"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// CapacityFile is the part of a `make bench` results JSON the planner reads:
// the capacity sweep per function and the point-read runs, whose
// pgbench-through-PgBouncer throughput is what one PostgreSQL replica serves.
// The committed capacity.json has the same shape, so either can be given.
type CapacityFile struct {
	Source string                     `json:"source,omitempty"`
	Sweep  map[string]json.RawMessage `json:"sweep"`
	Point  []struct {
		Connections int        `json:"connections"`
		PgBouncer   pgbenchRun `json:"pgbouncer"`
	} `json:"point"`
}

// Capacity is the measured service model: one curve per function and the
// throughput one database instance sustains.
type Capacity struct {
	Source string
	Sweeps map[string][]SweepPoint
	// DBInstanceRPS is pgbench's best point-read throughput through
	// PgBouncer against one replica (the database's limit per instance).
	DBInstanceRPS float64
}

// sweepFallback names the curve a function uses when the sweep has none of
// its own: create-result and delete-result run one single-row statement on
// the primary each, like update-result (docs/performance.md).
var sweepFallback = map[string]string{
	"create-result": "update-result",
	"delete-result": "update-result",
}

// LoadCapacity reads a capacity file or a `make bench` results JSON.
func LoadCapacity(path string) (*Capacity, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f CapacityFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &Capacity{Source: f.Source, Sweeps: map[string][]SweepPoint{}}
	if c.Source == "" {
		c.Source = path
	}
	for name, msg := range f.Sweep {
		var pts []SweepPoint
		if json.Unmarshal(msg, &pts) != nil || len(pts) == 0 {
			continue // best_pool, recommend, pools: not curves
		}
		if name == "pools" {
			continue
		}
		c.Sweeps[name] = pts
	}
	for _, p := range f.Point {
		c.DBInstanceRPS = math.Max(c.DBInstanceRPS, p.PgBouncer.RPS)
	}
	if _, ok := c.Sweeps["get-result"]; !ok {
		return nil, fmt.Errorf("%s: no capacity sweep of get-result (run `make bench` with the sweep scenario)", path)
	}
	if c.DBInstanceRPS <= 0 {
		return nil, fmt.Errorf("%s: no point-read pgbench run (run `make bench` with the point scenario)", path)
	}
	return c, nil
}

// Model returns the service model of one pod of a function with cpu cores
// (0: as measured, uncapped).
func (c *Capacity) Model(function string, cpu float64) (*PodModel, error) {
	pts, ok := c.Sweeps[function]
	if !ok {
		pts, ok = c.Sweeps[sweepFallback[function]]
	}
	if !ok {
		return nil, fmt.Errorf("capacity file %s has no sweep for %s", c.Source, function)
	}
	return NewPodModel(pts, cpu)
}

// PodModel is one pod's service curve: throughput and latency against the
// number of requests in flight inside it, interpolated between the swept
// points. Throughput is made monotone (the running maximum over the sweep):
// a pod given more concurrent requests never serves fewer per second than
// it did at a lower concurrency; the dips between swept points are
// run-to-run noise on the shared machine (the two passes of a point differ
// by up to ~15 %).
type PodModel struct {
	pts []SweepPoint // sorted by concurrency, RPS monotone
}

// NewPodModel builds a model from sweep points. cpu > 0 caps each point's
// throughput at what that many cores serve at the CPU cost per request
// measured there (function_cpu / rps): the sweep's process had a share of a
// 2-core machine, a pod has its CPU request. Latency at a capped point grows
// with the mean time in the pod (Little's law: in flight / throughput).
func NewPodModel(points []SweepPoint, cpu float64) (*PodModel, error) {
	pts := append([]SweepPoint(nil), points...)
	sort.Slice(pts, func(i, j int) bool { return pts[i].Concurrency < pts[j].Concurrency })
	best := 0.0
	for i := range pts {
		if pts[i].Concurrency <= 0 || pts[i].RPS <= 0 || pts[i].P50Ms <= 0 {
			return nil, fmt.Errorf("point %d: concurrency, rps and p50_ms must be positive", i)
		}
		if pts[i].P99Ms < pts[i].P50Ms {
			pts[i].P99Ms = pts[i].P50Ms
		}
		if cpu > 0 {
			if pts[i].FunctionCPU <= 0 {
				return nil, fmt.Errorf("point %d: no function_cpu to cap the throughput at %g cores", i, cpu)
			}
			if limit := cpu * pts[i].RPS / pts[i].FunctionCPU; limit < pts[i].RPS {
				slow := pts[i].RPS / limit
				pts[i].RPS = limit
				pts[i].P50Ms *= slow
				pts[i].P99Ms *= slow
			}
		}
		best = math.Max(best, pts[i].RPS)
		pts[i].RPS = best
	}
	return &PodModel{pts: pts}, nil
}

// MaxConcurrency is the largest swept concurrency.
func (m *PodModel) MaxConcurrency() float64 { return m.pts[len(m.pts)-1].Concurrency }

// Peak is the highest throughput of one pod.
func (m *PodModel) Peak() float64 { return m.pts[len(m.pts)-1].RPS }

// Throughput is requests per second of one pod with c requests in flight.
// Below the first swept point it is proportional to c (an idle pod serves
// what arrives at the single-request latency); beyond the last it stays at
// the last point's throughput.
func (m *PodModel) Throughput(c float64) float64 {
	if c <= 0 {
		return 0
	}
	first := m.pts[0]
	if c <= first.Concurrency {
		return first.RPS * c / first.Concurrency
	}
	i, f := m.locate(c)
	if f < 0 {
		return m.pts[len(m.pts)-1].RPS
	}
	return m.pts[i].RPS + f*(m.pts[i+1].RPS-m.pts[i].RPS)
}

// ConcurrencyFor is the in-flight count at which one pod serves rate
// requests per second (the inverse of Throughput), capped at limit.
func (m *PodModel) ConcurrencyFor(rate, limit float64) float64 {
	if rate <= 0 {
		return 0
	}
	lo, hi := 0.0, limit
	if m.Throughput(hi) <= rate {
		return hi
	}
	for k := 0; k < 50; k++ {
		mid := (lo + hi) / 2
		if m.Throughput(mid) < rate {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// Latency returns the median and 99th percentile latency in milliseconds of
// one pod with c requests in flight, interpolated on log(c).
func (m *PodModel) Latency(c float64) (p50, p99 float64) {
	first := m.pts[0]
	if c <= first.Concurrency {
		return first.P50Ms, first.P99Ms
	}
	i, f := m.locate(c)
	if f < 0 {
		last := m.pts[len(m.pts)-1]
		// Beyond the sweep latency grows with the queue inside the pod.
		scale := c / last.Concurrency
		return last.P50Ms * scale, last.P99Ms * scale
	}
	a, b := m.pts[i], m.pts[i+1]
	return a.P50Ms + f*(b.P50Ms-a.P50Ms), a.P99Ms + f*(b.P99Ms-a.P99Ms)
}

// MeanLatencyMs is Little's law for one pod: in flight over throughput.
func (m *PodModel) MeanLatencyMs(c float64) float64 {
	if c <= m.pts[0].Concurrency {
		return 1000 * m.pts[0].Concurrency / m.pts[0].RPS
	}
	return 1000 * c / m.Throughput(c)
}

// locate returns the segment index and the fraction along it (on log c) of
// c; f < 0 means beyond the last point.
func (m *PodModel) locate(c float64) (int, float64) {
	for i := 0; i+1 < len(m.pts); i++ {
		a, b := m.pts[i].Concurrency, m.pts[i+1].Concurrency
		if c <= b {
			return i, (math.Log(c) - math.Log(a)) / (math.Log(b) - math.Log(a))
		}
	}
	return len(m.pts) - 1, -1
}

// ExtractCapacity writes the fields the planner reads from a `make bench`
// results JSON (the capacity sweeps, the point-read pgbench runs and the
// machine table) to out, so that a run can become the committed
// capacity.json without copying numbers by hand.
func ExtractCapacity(benchJSON, out string) error {
	raw, err := os.ReadFile(benchJSON)
	if err != nil {
		return err
	}
	var in map[string]any
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("%s: %w", benchJSON, err)
	}
	if _, err := LoadCapacity(benchJSON); err != nil {
		return err
	}
	keep := func(m map[string]any, keys ...string) map[string]any {
		o := map[string]any{}
		for _, k := range keys {
			if v, ok := m[k]; ok {
				o[k] = v
			}
		}
		return o
	}
	sweepIn, _ := in["sweep"].(map[string]any)
	sweep := map[string]any{"best_pool": sweepIn["best_pool"]}
	for name, v := range sweepIn {
		pts, ok := v.([]any)
		if !ok || name == "pools" {
			continue
		}
		var outPts []any
		for _, p := range pts {
			if m, ok := p.(map[string]any); ok {
				outPts = append(outPts, keep(m, "concurrency", "rps", "other_pass_rps", "p50_ms", "p99_ms", "errors", "pool", "function_cpu"))
			}
		}
		sweep[name] = outPts
	}
	var points []any
	pointIn, _ := in["point"].([]any)
	for _, p := range pointIn {
		if m, ok := p.(map[string]any); ok {
			pb, _ := m["pgbouncer"].(map[string]any)
			points = append(points, map[string]any{"connections": m["connections"], "pgbouncer": keep(pb, "rps", "p50_ms", "p99_ms", "errors")})
		}
	}
	doc := map[string]any{
		"source":  "make bench run " + strings.TrimSuffix(filepath.Base(benchJSON), ".json") + " (bench-results/" + filepath.Base(benchJSON) + ": sweep, point and machine fields)",
		"machine": in["machine"],
		"sweep":   sweep,
		"point":   points,
	}
	b, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(b, '\n'), 0o644)
}
