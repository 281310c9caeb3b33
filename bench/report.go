package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// row is one line of a results table: a figure, its reference measured in
// the same rounds, and the target on their ratio (or on the figure alone).
type row struct {
	what   string
	value  string
	ref    string // "reference name: value"
	ratio  float64
	target string // e.g. "≥ 0.9×"; "" when none
	met    int    // 1 met, -1 missed, 0 no target
	note   string
}

// table is the rows of one section.
type table struct {
	key     string // the section's flag name
	title   string
	method  string // one paragraph: what was done
	columns [2]string
	rows    []row
	extra   []string // paragraphs after the table
}

func (t *table) add(r row) {
	t.rows = append(t.rows, r)
	status := ""
	switch r.met {
	case 1:
		status = " [met]"
	case -1:
		status = " [MISSED]"
	}
	ratio := ""
	if r.ratio != 0 {
		ratio = fmt.Sprintf(" ratio %.2f×", r.ratio)
	}
	logf("  %s: %s (vs %s)%s %s%s", r.what, r.value, r.ref, ratio, r.target, status)
}

// atLeast returns the met mark of ratio ≥ want.
func atLeast(ratio, want float64) int {
	if math.IsNaN(ratio) || ratio == 0 {
		return 0
	}
	if ratio >= want {
		return 1
	}
	return -1
}

func atMost(ratio, want float64) int {
	if math.IsNaN(ratio) || ratio == 0 {
		return 0
	}
	if ratio <= want {
		return 1
	}
	return -1
}

func (t *table) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", t.title)
	if t.method != "" {
		b.WriteString(t.method + "\n\n")
	}
	c0, c1 := t.columns[0], t.columns[1]
	if c0 == "" {
		c0 = "figure"
	}
	if c1 == "" {
		c1 = "reference (same rounds)"
	}
	fmt.Fprintf(&b, "| what | %s | %s | ratio | target | |\n| --- | --- | --- | --- | --- | --- |\n", c0, c1)
	for _, r := range t.rows {
		ratio := ""
		if r.ratio != 0 && !math.IsNaN(r.ratio) {
			ratio = fmt.Sprintf("%.2f×", r.ratio)
		}
		mark := ""
		switch r.met {
		case 1:
			mark = "met"
		case -1:
			mark = "**missed**"
		}
		what := r.what
		if r.note != "" {
			what += " (" + r.note + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", what, r.value, r.ref, ratio, r.target, mark)
	}
	for _, e := range t.extra {
		b.WriteString("\n" + e + "\n")
	}
	return b.String()
}

// Statistics.

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// pct returns the p-th percentile (0..100) of ds, nearest rank.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func medianDur(ds []time.Duration) time.Duration {
	f := make([]float64, len(ds))
	for i, d := range ds {
		f[i] = float64(d)
	}
	return time.Duration(median(f))
}

func fmtRate(r float64) string {
	if math.IsNaN(r) {
		return "n/a"
	}
	return commas(int64(math.Round(r))) + "/s"
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

func fmtBytes(b float64) string {
	switch {
	case math.Abs(b) >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case math.Abs(b) >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func rounds(vals []float64, f func(float64) string) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = f(v)
	}
	return strings.Join(parts, ", ")
}
