package planner

import "math"

// histogram counts latencies (milliseconds) in logarithmic buckets 2 % wide
// from 0.01 ms to about 10 minutes.
type histogram struct {
	counts []float64
	total  float64
}

const (
	histMin    = 0.01
	histGrowth = 1.02
	histBins   = 900
)

var histLogGrowth = math.Log(histGrowth)

func newHistogram() *histogram { return &histogram{counts: make([]float64, histBins)} }

func (h *histogram) add(ms, n float64) {
	i := 0
	if ms > histMin {
		i = min(int(math.Log(ms/histMin)/histLogGrowth), histBins-1)
	}
	h.counts[i] += n
	h.total += n
}

func (h *histogram) reset() {
	clear(h.counts)
	h.total = 0
}

// quantile returns the upper edge of the bucket holding quantile q (0 when empty).
func (h *histogram) quantile(q float64) float64 {
	if h.total <= 0 {
		return 0
	}
	want, seen := q*h.total, 0.0
	for i, c := range h.counts {
		seen += c
		if seen >= want-1e-9 {
			return histMin * math.Pow(histGrowth, float64(i+1))
		}
	}
	return histMin * math.Pow(histGrowth, histBins)
}
