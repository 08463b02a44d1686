package planner

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Profile is a traffic profile file (knative/planner/profiles/*.yaml):
// arrivals per second over time, split between functions, drawn as Poisson
// arrivals from Seed so that a plan is reproducible.
type Profile struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Shape: steady, step or results-day.
	Shape    string  `json:"shape"`
	Duration float64 `json:"duration"` // seconds
	Seed     uint64  `json:"seed"`
	// Functions: share of the arrivals per function (Knative Service name).
	Functions map[string]float64 `json:"functions"`

	// steady
	Rate float64 `json:"rate,omitempty"`
	// step: From until At seconds, then To.
	From float64 `json:"from,omitempty"`
	To   float64 `json:"to,omitempty"`
	At   float64 `json:"at,omitempty"`
	// results-day: Base before publication at PublishAt; a ramp to Peak over
	// RampSeconds; then the demand halves every TailHalfLife seconds, never
	// below Base; refresh bursts of Factor x the demand for Seconds, every
	// Every seconds after publication.
	Base         float64 `json:"base,omitempty"`
	PublishAt    float64 `json:"publishAt,omitempty"`
	Peak         float64 `json:"peak,omitempty"`
	RampSeconds  float64 `json:"rampSeconds,omitempty"`
	TailHalfLife float64 `json:"tailHalfLife,omitempty"`
	Bursts       struct {
		Every   float64 `json:"every"`
		Seconds float64 `json:"seconds"`
		Factor  float64 `json:"factor"`
	} `json:"bursts,omitempty"`
	// Spikes: Requests extra requests arriving together at At seconds (any shape).
	Spikes []Spike `json:"spikes,omitempty"`
}

// Spike is a number of requests arriving at one moment.
type Spike struct {
	At       float64 `json:"at"`
	Requests float64 `json:"requests"`
}

// LoadProfile reads a profile file.
func LoadProfile(path string) (*Profile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Profile
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, p.Validate()
}

// Validate checks the profile's parameters.
func (p *Profile) Validate() error {
	if p.Duration <= 0 {
		return fmt.Errorf("profile %s: duration must be positive", p.Name)
	}
	if len(p.Functions) == 0 {
		return fmt.Errorf("profile %s: functions is empty", p.Name)
	}
	for f, share := range p.Functions {
		if share < 0 {
			return fmt.Errorf("profile %s: share of %s is negative", p.Name, f)
		}
	}
	switch p.Shape {
	case "steady":
		if p.Rate < 0 {
			return fmt.Errorf("profile %s: rate is negative", p.Name)
		}
	case "step":
		if p.From < 0 || p.To < 0 || p.At < 0 {
			return fmt.Errorf("profile %s: from, to and at must not be negative", p.Name)
		}
	case "results-day":
		if p.Peak <= 0 || p.RampSeconds <= 0 || p.TailHalfLife <= 0 {
			return fmt.Errorf("profile %s: peak, rampSeconds and tailHalfLife must be positive", p.Name)
		}
		if p.Bursts.Every < 0 || p.Bursts.Seconds < 0 || (p.Bursts.Every > 0 && p.Bursts.Factor <= 0) {
			return fmt.Errorf("profile %s: bursts need every, seconds and a positive factor", p.Name)
		}
	default:
		return fmt.Errorf("profile %s: shape %q is not one of steady, step, results-day", p.Name, p.Shape)
	}
	return nil
}

// Set overrides one parameter, e.g. "peak=8000" or "duration=600".
func (p *Profile) Set(expr string) error {
	k, v, ok := strings.Cut(expr, "=")
	if !ok {
		return fmt.Errorf("profile parameter %q: want name=value", expr)
	}
	var n float64
	if _, err := fmt.Sscan(v, &n); err != nil {
		return fmt.Errorf("profile parameter %q: %v", expr, err)
	}
	fields := map[string]*float64{
		"duration": &p.Duration, "rate": &p.Rate, "from": &p.From, "to": &p.To, "at": &p.At,
		"base": &p.Base, "publishAt": &p.PublishAt, "peak": &p.Peak, "rampSeconds": &p.RampSeconds,
		"tailHalfLife": &p.TailHalfLife, "bursts.every": &p.Bursts.Every,
		"bursts.seconds": &p.Bursts.Seconds, "bursts.factor": &p.Bursts.Factor,
	}
	if k == "seed" {
		p.Seed = uint64(n)
		return nil
	}
	f, ok := fields[k]
	if !ok {
		return fmt.Errorf("profile parameter %q: unknown name %s", expr, k)
	}
	*f = n
	return p.Validate()
}

// RateAt is the mean arrival rate (requests per second, all functions) at t.
func (p *Profile) RateAt(t float64) float64 {
	switch p.Shape {
	case "steady":
		return p.Rate
	case "step":
		if t < p.At {
			return p.From
		}
		return p.To
	}
	if t < p.PublishAt {
		return p.Base
	}
	since := t - p.PublishAt
	var r float64
	if since < p.RampSeconds {
		x := since / p.RampSeconds
		r = p.Base + (p.Peak-p.Base)*x*x*(3-2*x) // smooth from Base to Peak
	} else {
		r = math.Max(p.Base, p.Peak*math.Pow(0.5, (since-p.RampSeconds)/p.TailHalfLife))
	}
	if p.Bursts.Every > 0 && since >= p.Bursts.Every && math.Mod(since, p.Bursts.Every) < p.Bursts.Seconds {
		r *= p.Bursts.Factor
	}
	return r
}

// SortedFunctions lists the profile's functions by name.
func (p *Profile) SortedFunctions() []string {
	var names []string
	for n := range p.Functions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
