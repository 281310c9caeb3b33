package metrics_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/metrics"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// A host exposes the plugin's metrics at /metrics, keeping the health and
// stats_up series even while its database is down (ContinueOnError).
func ExampleNewCollector() {
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	defer fake.Close()
	p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(p, metrics.Options{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for sc := bufio.NewScanner(rec.Body); sc.Scan(); {
		if line := sc.Text(); strings.HasPrefix(line, "mlmsoft_health") || strings.HasPrefix(line, "mlmsoft_stats_up") {
			fmt.Println(line)
		}
	}
	// Output:
	// mlmsoft_health{state="misconfigured"} 0
	// mlmsoft_health{state="ok"} 1
	// mlmsoft_health{state="unavailable"} 0
	// mlmsoft_stats_up 1
}
