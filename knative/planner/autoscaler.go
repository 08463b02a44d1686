package planner

import (
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	autoscalingv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	"knative.dev/serving/pkg/autoscaler/config/autoscalerconfig"
	"knative.dev/serving/pkg/autoscaler/metrics"
	"knative.dev/serving/pkg/autoscaler/scaling"
	aresources "knative.dev/serving/pkg/reconciler/autoscaling/resources"
)

// TickInterval is how often Knative's autoscaler asks the decider
// (knative.dev/serving/pkg/autoscaler/scaling, tickInterval).
const TickInterval = 2 * time.Second

// Autoscaler is one revision's autoscaler as Knative runs it: the metric
// collector with its stable and panic windows (metrics.MetricCollector over
// aggregation buckets, fed the way queue-proxy scrapes and activator pushes
// feed it) and the KPA decider (scaling.New). Both are Knative's code; the
// planner only calls them with the virtual time.
type Autoscaler struct {
	key       types.NamespacedName
	collector *metrics.MetricCollector
	scaler    scaling.UniScaler
	pods      *podCounter
	logger    *zap.SugaredLogger
}

// podCounter answers the decider's ReadyCount. The first call, made while
// the decider is created, reports no endpoints: a new revision's decider is
// created before its pods are ready (scaling.New starts in panic mode with
// the wall clock when it sees more than one pod).
type podCounter struct {
	ready   int
	created bool
}

func (p *podCounter) ReadyCount() (int, error) {
	if !p.created {
		return 0, nil
	}
	return p.ready, nil
}

func (p *podCounter) NotReadyCount() (int, error) { return 0, nil }

// NewAutoscaler creates the collector and decider of one PodAutoscaler.
func NewAutoscaler(pa *autoscalingv1alpha1.PodAutoscaler, decider *scaling.Decider, as *autoscalerconfig.Config) (*Autoscaler, error) {
	logger := zap.NewNop().Sugar()
	collector := metrics.NewMetricCollector(
		func(*autoscalingv1alpha1.Metric, *zap.SugaredLogger) (metrics.StatsScraper, error) {
			return nil, nil // stats arrive through Record, as the activator's do
		}, logger)
	if err := collector.CreateOrUpdate(aresources.MakeMetric(pa, "", as)); err != nil {
		return nil, fmt.Errorf("metric collector: %w", err)
	}
	pods := &podCounter{}
	scaler := scaling.New(attribute.NewSet(), noop.NewMeterProvider(), pa.Namespace, pa.Name, collector, pods, &decider.Spec)
	pods.created = true
	return &Autoscaler{
		key:       types.NamespacedName{Namespace: pa.Namespace, Name: pa.Name},
		collector: collector,
		scaler:    scaler,
		pods:      pods,
		logger:    logger,
	}, nil
}

// Record adds one second's revision-wide stat: the average number of
// requests in the revision (in the pods, in queue-proxy and in the
// activator) and the requests counted in that second.
func (a *Autoscaler) Record(now time.Time, concurrency, requests float64) {
	a.collector.Record(a.key, now, metrics.Stat{
		PodName:                   "revision",
		AverageConcurrentRequests: concurrency,
		RequestCount:              requests,
	})
}

// Scale asks the decider for the desired scale at now with ready pods.
func (a *Autoscaler) Scale(now time.Time, ready int) scaling.ScaleResult {
	a.pods.ready = ready
	return a.scaler.Scale(a.logger, now)
}

// StableAndPanic returns the collector's window averages at now.
func (a *Autoscaler) StableAndPanic(now time.Time) (float64, float64) {
	s, p, _ := a.collector.StableAndPanicConcurrency(a.key, now)
	return s, p
}

// Close stops the collector.
func (a *Autoscaler) Close() { a.collector.Delete(a.key.Namespace, a.key.Name) }
