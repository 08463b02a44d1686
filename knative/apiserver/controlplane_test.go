package apiserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/klog/v2"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
)

// The control plane every test talks to, started once by TestMain.
var cluster struct {
	config *rest.Config
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	logDir, err := os.MkdirTemp("", "exam-results-apiserver-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if code == 0 {
			os.RemoveAll(logDir)
		} else {
			fmt.Fprintf(os.Stderr, "etcd and kube-apiserver logs kept in %s\n", logDir)
		}
	}()
	tb, err := newMainTB(logDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer tb.runCleanups()
	defer func() {
		if r := recover(); r != nil {
			if r != errFailNow {
				panic(r)
			}
			fmt.Fprintf(os.Stderr, "control plane: %s\n", tb.lastError())
			code = 1
		}
	}()

	start := time.Now()
	etcdURL := startEtcd(tb, filepath.Join(logDir, "etcd"))
	storage := storagebackend.NewDefaultConfig("/registry", nil)
	storage.Transport.ServerList = []string{etcdURL}
	server, err := kubeapiservertesting.StartTestServer(tb, nil, []string{
		"--watch-cache=false",             // nothing watches here; keeps the server small
		"--endpoint-reconciler-type=none", // no kubernetes Endpoints for a loopback address
	}, storage)
	if err != nil {
		tb.Fatalf("kube-apiserver: %v", err)
	}
	tb.Cleanup(server.TearDownFn)
	tb.quietKlog() // the server's start-up reset klog's output

	cfg := rest.CopyConfig(server.ClientConfig)
	cfg.QPS, cfg.Burst = 200, 400
	cluster.config = cfg
	cluster.kube = kubernetes.NewForConfigOrDie(cfg)
	cluster.dyn = dynamic.NewForConfigOrDie(cfg)
	cluster.mapper = restmapper.NewDeferredDiscoveryRESTMapper(
		memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	up := time.Since(start)

	crds, err := installUpstreamCRDs(context.Background(), func(f string, a ...any) { fmt.Printf(f, a...) })
	if err != nil {
		tb.Fatalf("installing the upstream CRDs: %v", err)
	}
	fmt.Printf("control plane: etcd and kube-apiserver %s up in %s; %d upstream CRDs established in %s\n",
		kubeVersion(), up.Round(time.Millisecond), crds, (time.Since(start) - up).Round(time.Millisecond))
	return m.Run()
}

// kubeVersion is the k8s.io/kubernetes version this module's go.mod pins
// (the server's own version string is only set by Kubernetes' release build).
func kubeVersion() string {
	return requiredVersion(filepath.Join(repoRoot(), "knative", "apiserver", "go.mod"), "k8s.io/kubernetes")
}

// startEtcd starts an embedded single-member etcd on 127.0.0.1 and a free
// port, storing under dir (no fsync: the data is thrown away), and returns
// its client URL.
func startEtcd(tb *mainTB, dir string) string {
	ports := freePorts(tb, 2)
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true
	cfg.QuotaBackendBytes = 512 << 20
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(filepath.Dir(dir), "etcd.log")}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		tb.Fatalf("etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		tb.Fatalf("etcd did not become ready in 60s")
	}
	tb.Cleanup(e.Close)
	return client.String()
}

func freePorts(tb *mainTB, n int) []int {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("free port: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// namespace creates a fresh namespace for one test.
func namespace(t testing.TB, name string) string {
	t.Helper()
	if err := ensureNamespace(context.Background(), name); err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	return name
}

// ensureNamespace creates a namespace with its "default" ServiceAccount
// (which kube-controller-manager creates in a cluster; Pods that name no
// ServiceAccount need it).
func ensureNamespace(ctx context.Context, name string) error {
	_, err := cluster.kube.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = cluster.kube.CoreV1().ServiceAccounts(name).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	return err
}

var errFailNow = errors.New("control plane failed to start")

// mainTB is the testing.TB that StartTestServer needs, for TestMain (which
// has none): logs go to kube-apiserver.log, a failure stops the start-up.
type mainTB struct {
	mu       sync.Mutex
	log      io.Writer
	dir      string
	cleanups []func()
	failed   bool
	last     string
}

func newMainTB(dir string) (*mainTB, error) {
	f, err := os.Create(filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	tb := &mainTB{log: f, dir: dir}
	tb.quietKlog()
	tb.Cleanup(func() { klog.Flush(); f.Close() })
	return tb, nil
}

// quietKlog sends klog's global output (the server logs through it and
// through the test logger) to the log file instead of stderr.
func (t *mainTB) quietKlog() {
	klog.LogToStderr(false)
	klog.SetOutput(t.log)
}

func (t *mainTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *mainTB) runCleanups() {
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		f()
	}
}

func (t *mainTB) Log(args ...any) { t.write(fmt.Sprintln(args...)) }
func (t *mainTB) Logf(format string, args ...any) {
	t.write(fmt.Sprintf(format, args...) + "\n")
}
func (t *mainTB) write(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	io.WriteString(t.log, s)
}
func (t *mainTB) Error(args ...any) { t.fail(fmt.Sprint(args...)) }
func (t *mainTB) Errorf(format string, args ...any) {
	t.fail(fmt.Sprintf(format, args...))
}
func (t *mainTB) fail(msg string) {
	t.write("ERROR: " + msg + "\n")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed, t.last = true, msg
}
func (t *mainTB) lastError() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}
func (t *mainTB) Fail()    { t.fail("failed") }
func (t *mainTB) FailNow() { panic(errFailNow) }
func (t *mainTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}
func (t *mainTB) Fatal(args ...any) { t.Error(args...); t.FailNow() }
func (t *mainTB) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	t.FailNow()
}
func (t *mainTB) Helper()                  {}
func (t *mainTB) Name() string             { return "TestMain" }
func (t *mainTB) Setenv(key, value string) { os.Setenv(key, value) }
func (t *mainTB) Skip(args ...any)         { t.Fatal(args...) }
func (t *mainTB) SkipNow()                 { t.FailNow() }
func (t *mainTB) Skipf(f string, a ...any) { t.Fatalf(f, a...) }
func (t *mainTB) Skipped() bool            { return false }
func (t *mainTB) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
