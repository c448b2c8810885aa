// Command tpp-testcluster runs a real Kubernetes control plane on 127.0.0.1 for tests:
// embedded etcd, kube-apiserver and kube-controller-manager (garbage collector, namespace and
// service-account controllers), with its own certificates, RBAC on, and an admin kubeconfig.
//
// It prints "READY <kubeconfig path>" on stdout once the API server answers /readyz and the
// controller manager answers /healthz, and stops everything on SIGTERM/SIGINT (or when stdin
// closes, with --exit-on-stdin-eof), leaving no process behind. Component logs go to
// <dir>/controlplane.log.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	// Re-executed as one component: each runs in its own process so that their global
	// registries (flags, metrics) never collide.
	if len(os.Args) > 1 && (os.Args[1] == "kube-apiserver" || os.Args[1] == "kube-controller-manager") {
		os.Exit(runComponent(os.Args[1], os.Args[2:]))
	}
	stderr := os.Stderr
	if err := run(); err != nil {
		fmt.Fprintf(stderr, "tpp-testcluster: %v\n", err)
		os.Exit(1)
	}
}

func runComponent(name string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cmd := apiserver.NewAPIServerCommand()
	if name == "kube-controller-manager" {
		cmd = controllermanager.NewControllerManagerCommand()
	}
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func run() error {
	dirFlag := flag.String("dir", "", "directory for certificates, data, logs and the kubeconfig (default: a temporary one, removed on exit)")
	port := flag.Int("port", 0, "API server port on 127.0.0.1 (0: a free one)")
	exitOnEOF := flag.Bool("exit-on-stdin-eof", false, "stop when standard input closes (the parent process died)")
	flag.Parse()

	dir := *dirFlag
	if dir == "" {
		tmp, err := os.MkdirTemp("", "tpp-testcluster-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "controlplane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *exitOnEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	apiPort := *port
	if apiPort == 0 {
		if apiPort, err = freePort(); err != nil {
			return err
		}
	}
	pki, err := writePKI(dir)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}

	etcd, etcdURL, err := startEtcd(dir, logFile)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer func() {
		etcd.Close()
		<-etcd.Server.StopNotify()
	}()

	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, pki); err != nil {
		return err
	}

	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file=" + pki.servingCert,
		"--tls-private-key-file=" + pki.servingKey,
		"--client-ca-file=" + pki.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.saPublic,
		"--service-account-signing-key-file=" + pki.saPrivate,
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--profiling=false",
		"--v=0",
	}
	apiProc, err := startComponent(ctx, "kube-apiserver", apiArgs, logFile)
	if err != nil {
		return err
	}
	defer stopComponent(apiProc)

	adminTLS, err := pki.adminTLS()
	if err != nil {
		return err
	}
	if err := waitHealthy(ctx, server+"/readyz", adminTLS, apiProc, 120*time.Second); err != nil {
		return fmt.Errorf("kube-apiserver: %w (see %s)", err, logFile.Name())
	}

	cmPort, err := freePort()
	if err != nil {
		return err
	}
	cmArgs := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", cmPort),
		"--cert-dir=" + filepath.Join(dir, "controller-manager-certs"),
		"--leader-elect=false",
		"--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller",
		"--service-account-private-key-file=" + pki.saPrivate,
		"--root-ca-file=" + pki.caCert,
		"--profiling=false",
		"--v=0",
	}
	cmProc, err := startComponent(ctx, "kube-controller-manager", cmArgs, logFile)
	if err != nil {
		return err
	}
	defer stopComponent(cmProc)
	selfSigned := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the controller manager's own self-signed serving cert on loopback
	if err := waitHealthy(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", cmPort), selfSigned, cmProc, 120*time.Second); err != nil {
		return fmt.Errorf("kube-controller-manager: %w (see %s)", err, logFile.Name())
	}

	if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(kubeconfig+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Printf("READY %s\n", kubeconfig)

	select {
	case <-ctx.Done():
	case <-apiProc.done:
		return fmt.Errorf("kube-apiserver exited (see %s)", logFile.Name())
	case <-cmProc.done:
		return fmt.Errorf("kube-controller-manager exited (see %s)", logFile.Name())
	}
	return nil
}

type component struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func startComponent(ctx context.Context, name string, args []string, log io.Writer) (*component, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Stdout = log
	cmd.Stderr = log
	// The component dies with us even if we are killed without a chance to stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func stopComponent(c *component) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	// The controller manager keeps no state of its own and lingers ~20 s after SIGTERM; the API
	// server drains its requests within a few seconds.
	grace := 20 * time.Second
	if c.name == "kube-controller-manager" {
		grace = 3 * time.Second
	}
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func waitHealthy(ctx context.Context, endpoint string, tlsConfig *tls.Config, c *component, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get(endpoint)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return fmt.Errorf("exited before becoming healthy")
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy after %s", endpoint, timeout)
}

func startEtcd(dir string, log io.Writer) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "tpp-testcluster"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peerURL.String())
	cfg.UnsafeNoFsync = true // test data: speed over durability
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready after 60s")
	}
	_, _ = fmt.Fprintf(log, "etcd ready on %s\n", clientURL.String())
	return e, clientURL.String(), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
