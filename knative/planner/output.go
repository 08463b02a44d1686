package planner

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

var csvHeader = []string{
	"t", "function", "demand", "pods_desired", "pods_ready", "inflight_per_pod", "queue", "activator_in_path",
	"p50_ms", "p99_ms", "served", "refused", "timed_out", "pgbouncer_clients", "pgbouncer_clients_in_use",
	"pgbouncer_max_client_conn", "server_connections", "max_connections", "db_utilization",
}

// WriteCSV writes the per-second table.
func WriteCSV(path string, rows []Second) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(csvHeader)
	g := func(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
	for _, r := range rows {
		_ = w.Write([]string{
			strconv.Itoa(r.T), r.Function, g(r.Demand), strconv.Itoa(r.PodsDesired), strconv.Itoa(r.PodsReady),
			g(r.InflightPerPod), g(r.Queue), strconv.FormatBool(r.ActivatorInPath), g(r.P50Ms), g(r.P99Ms),
			g(r.Served), g(r.Refused), g(r.TimedOut), strconv.Itoa(r.PgbClients), g(r.PgbClientsInUse),
			strconv.Itoa(r.PgbMaxClients), g(r.ServerConns), strconv.Itoa(r.MaxConnections), g(r.DBUtilization),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteJSON writes the summary, the settings and the per-second table.
func WriteJSON(path string, res *Result, settings map[string]any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", " ")
	if err := enc.Encode(map[string]any{
		"profile": res.Profile, "settings": settings, "summary": res.Summary, "seconds": res.Rows,
	}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// PrintSummary writes the terminal summary of a plan.
func PrintSummary(w io.Writer, res *Result, rel *Release, obj Objective) {
	for _, name := range res.Profile.SortedFunctions() {
		s := res.Summary[name]
		fn := rel.Functions[name]
		fmt.Fprintf(w, "%s  target %s (utilization %s%%), containerConcurrency %d, min/max/initial scale %d/%d/%d, scale-down delay %s, target-burst-capacity %g\n",
			name, fn.Annotations["autoscaling.knative.dev/target"],
			fn.Annotations["autoscaling.knative.dev/target-utilization-percentage"],
			fn.ContainerConcurrency, fn.MinScale, fn.MaxScale, fn.InitialScale, fn.Decider.Spec.ScaleDownDelay,
			fn.Decider.Spec.TargetBurstCapacity)
		fmt.Fprintf(w, "  requests %s (peak %s/s), served %s, refused %s, timed out %s\n",
			count(s.Requests), count(s.PeakDemand), count(s.Served), count(s.Refused), count(s.TimedOut))
		fmt.Fprintf(w, "  latency p50 %.1f ms, p99 %.1f ms; worst minute p99 %.1f ms (minute %d)\n",
			s.P50Ms, s.P99Ms, s.WorstMinuteP99Ms, s.WorstMinute)
		cpu := "uncapped"
		if s.PodCPU > 0 {
			cpu = fmt.Sprintf("%g cores", s.PodCPU)
		}
		fmt.Fprintf(w, "  pods ready max %d (desired max %d), %.1f pod-hours at %s per pod; longest queue %s\n",
			s.MaxPodsReady, s.MaxPodsDesired, s.PodSeconds/3600, cpu, count(s.MaxQueue))
	}
	var any *Summary
	for _, s := range res.Summary {
		any = s
		break
	}
	if any != nil {
		fmt.Fprintf(w, "PgBouncer client connections max %d of %d (max_client_conn x replicas); server connections max %.0f, max_connections %d; database busiest at %.0f%% of its measured capacity\n",
			any.MaxPgbClients, any.PgbMaxClients, any.MaxServerConns, any.MaxConnections, 100*any.MaxDBUtilization)
	}
	fails := obj.Check(res)
	if len(fails) == 0 {
		fmt.Fprintf(w, "objective met: %s\n", obj)
	} else {
		fmt.Fprintf(w, "objective NOT met (%s): %s\n", obj, strings.Join(fails, "; "))
	}
}

func count(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.1fk", x/1e3)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}

// Objective is what a plan must achieve.
type Objective struct {
	P99Ms     float64 // every minute's p99 at most this
	PodBudget int     // at most this many pods of one function at once (0: no limit)
}

func (o Objective) String() string {
	s := fmt.Sprintf("p99 <= %g ms in every minute, nothing refused or timed out", o.P99Ms)
	if o.PodBudget > 0 {
		s += fmt.Sprintf(", at most %d pods per function", o.PodBudget)
	}
	return s
}

// Check lists what a plan misses of the objective (empty: met).
func (o Objective) Check(res *Result) []string {
	var out []string
	for _, name := range res.Profile.SortedFunctions() {
		s := res.Summary[name]
		if s.WorstMinuteP99Ms > o.P99Ms {
			out = append(out, fmt.Sprintf("%s p99 %.1f ms in minute %d", name, s.WorstMinuteP99Ms, s.WorstMinute))
		}
		if s.Refused >= 0.5 {
			out = append(out, fmt.Sprintf("%s refused %s", name, count(s.Refused)))
		}
		if s.TimedOut >= 0.5 {
			out = append(out, fmt.Sprintf("%s timed out %s", name, count(s.TimedOut)))
		}
		if o.PodBudget > 0 && s.MaxPodsDesired > o.PodBudget {
			out = append(out, fmt.Sprintf("%s needs %d pods", name, s.MaxPodsDesired))
		}
	}
	return out
}
