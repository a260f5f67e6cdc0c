package integration

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gauge returns the value of the metric name, labelled db_name=app.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "db_name" && l.GetValue() == "app" {
					return value(m)
				}
			}
		}
	}
	t.Fatalf("no metric %s{db_name=app}", name)
	return 0
}

func value(m *dto.Metric) float64 {
	if m.GetGauge() != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

// TestPrometheusDBStats: Prometheus' DBStats collector over the DB's pool
// reports the library's pool sizes and the connections in use.
func TestPrometheusDBStats(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := open(t, dialect)
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewDBStatsCollector(db.DB, "app"))
			want := map[string]float64{"sqlite": 8, "postgres": 10}[dialect]
			assert.Equal(t, want, gauge(t, reg, "go_sql_max_open_connections"))
			conn, err := db.Conn(context.Background())
			require.NoError(t, err)
			assert.Equal(t, float64(1), gauge(t, reg, "go_sql_in_use_connections"))
			require.NoError(t, conn.Close())
			assert.Equal(t, float64(0), gauge(t, reg, "go_sql_in_use_connections"))
		})
	}
}
