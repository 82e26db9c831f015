// Command demo-web is BizCloud's sample access-layer service: the gateway routes `/` in the dev
// environment to it, and it answers with JSON naming the pod that served the request, so gray
// release, scaling and discovery can be watched from outside.
//
// Its identity comes from the environment, which the Deployment fills from the downward API:
// SERVICE, POD_NAME (falls back to the hostname), POD_IP (falls back to the first non-loopback
// address), VERSION, GROUP, ENV and NODE_NAME. PORT sets the listening port (default 8080).
//
// A failure switch lets tests and demos make an instance misbehave on purpose:
//
//	POST /admin/fail?rate=N[&mode=error|health]   N percent (0..100) of requests fail
//	GET  /admin/fail                              the current setting
//
// In mode "error" (the default) `GET /` answers 500; in mode "health" `GET /healthz` answers 503,
// so the readiness probe takes the pod out of service. rate=0 clears it. FAIL_RATE and FAIL_MODE
// set the switch at start. Every request is logged as one JSON line on stdout; SIGTERM stops
// accepting connections and lets in-flight requests finish.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// shutdownTimeout stays below the Deployment's terminationGracePeriodSeconds (5).
const shutdownTimeout = 4 * time.Second

// identity is the body of `GET /`.
type identity struct {
	Service string `json:"service"`
	Pod     string `json:"pod"`
	IP      string `json:"ip"`
	Version string `json:"version"`
	Group   string `json:"group"`
	Env     string `json:"env"`
	Node    string `json:"node"`
}

// failSwitch is the injected-failure setting; it is replaced as a whole, never mutated.
type failSwitch struct {
	Rate int    `json:"rate"`
	Mode string `json:"mode"`
}

const (
	modeError  = "error"
	modeHealth = "health"
)

func parseSwitch(rate, mode string) (failSwitch, error) {
	if mode == "" {
		mode = modeError
	}
	if mode != modeError && mode != modeHealth {
		return failSwitch{}, fmt.Errorf("mode must be %q or %q, not %q", modeError, modeHealth, mode)
	}
	if rate == "" {
		rate = "0"
	}
	n, err := strconv.Atoi(rate)
	if err != nil || n < 0 || n > 100 {
		return failSwitch{}, fmt.Errorf("rate must be an integer from 0 to 100, not %q", rate)
	}
	return failSwitch{Rate: n, Mode: mode}, nil
}

// fails says whether this request, to a path guarded in `mode`, should fail.
func (s *failSwitch) fails(mode string) bool {
	return s.Mode == mode && s.Rate > 0 && rand.IntN(100) < s.Rate
}

type server struct {
	id    identity
	fault atomic.Pointer[failSwitch]
	log   *slog.Logger
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *server) root(w http.ResponseWriter, _ *http.Request) {
	if s.fault.Load().fails(modeError) {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "injected failure", "pod": s.id.Pod})
		return
	}
	writeJSON(w, http.StatusOK, s.id)
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.fault.Load().fails(modeHealth) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("failing\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (s *server) showFail(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.fault.Load())
}

func (s *server) setFail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sw, err := parseSwitch(q.Get("rate"), q.Get("mode"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.fault.Store(&sw)
	s.log.Info("fail switch set", "rate", sw.Rate, "mode", sw.Mode)
	writeJSON(w, http.StatusOK, sw)
}

// recorder remembers the status and size of a response for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

func (s *server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Info("request",
			"method", r.Method,
			"path", r.URL.Path,
			"query", r.URL.RawQuery,
			"status", rec.status,
			"bytes", rec.bytes,
			"duration_ms", float64(time.Since(start).Microseconds())/1000,
			"remote", r.RemoteAddr,
			"user_agent", r.UserAgent(),
		)
	})
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.root)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /admin/fail", s.showFail)
	mux.HandleFunc("POST /admin/fail", s.setFail)
	return s.logged(mux)
}

func firstAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipnet, ok := a.(*net.IPNet); ok && !ipnet.IP.IsLoopback() && ipnet.IP.To4() != nil {
			return ipnet.IP.String()
		}
	}
	return ""
}

func identityFromEnv() identity {
	pod := os.Getenv("POD_NAME")
	if pod == "" {
		pod, _ = os.Hostname()
	}
	ip := os.Getenv("POD_IP")
	if ip == "" {
		ip = firstAddress()
	}
	return identity{
		Service: os.Getenv("SERVICE"),
		Pod:     pod,
		IP:      ip,
		Version: os.Getenv("VERSION"),
		Group:   os.Getenv("GROUP"),
		Env:     os.Getenv("ENV"),
		Node:    os.Getenv("NODE_NAME"),
	}
}

func run(log *slog.Logger) error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	initial, err := parseSwitch(os.Getenv("FAIL_RATE"), os.Getenv("FAIL_MODE"))
	if err != nil {
		return fmt.Errorf("FAIL_RATE/FAIL_MODE: %w", err)
	}
	s := &server{id: identityFromEnv(), log: log}
	s.fault.Store(&initial)

	srv := &http.Server{
		Addr:              ":" + port,
		Handler:           s.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Info("listening", "addr", srv.Addr, "service", s.id.Service, "pod", s.id.Pod, "version", s.id.Version,
		"group", s.id.Group, "fail_rate", initial.Rate, "fail_mode", initial.Mode)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout_s", shutdownTimeout.Seconds())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if err := run(log); err != nil {
		log.Error("exiting", "error", err.Error())
		os.Exit(1)
	}
}
