// realdata is a small Go HTTP service with a drifting mix of requests, run
// by scripts/record-realdata to record a real data set for the comparison
// runner: its /debug/pprof endpoints are scraped every 10 s, as a
// continuous profiler would.
//
// It serves a handful of handlers that do real work (JSON, regular
// expressions, sorting, gzip, hashing, templates, a growing cache, a
// contended lock, channel hand-offs) and drives them itself over loopback
// HTTP. The weights of the request mix drift slowly over time, and every
// -deploy period a "deploy" switches some handlers to a second code path, so
// stacks appear and disappear as in a real service.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand"
	"net/http"
	_ "net/http/pprof"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"
)

var (
	addr    = flag.String("addr", "127.0.0.1:6061", "listen address")
	workers = flag.Int("workers", 4, "load generator goroutines")
	pause   = flag.Duration("pause", 4*time.Millisecond, "pause between a worker's requests")
	deploy  = flag.Duration("deploy", 15*time.Minute, "period of the simulated deploys")
	seed    = flag.Int64("seed", 1, "random seed of the load")
)

var start = time.Now()

// version flips at every simulated deploy.
func version() int { return int(time.Since(start)/(*deploy)) % 2 }

type item struct {
	ID    int               `json:"id"`
	Name  string            `json:"name"`
	Tags  []string          `json:"tags"`
	Score float64           `json:"score"`
	Attrs map[string]string `json:"attrs"`
}

func makeItems(r *rand.Rand, n int) []item {
	out := make([]item, n)
	for i := range out {
		out[i] = item{ID: i, Name: fmt.Sprintf("item-%d-%d", i, r.Intn(1000)),
			Tags:  []string{"a", "b", strings.Repeat("c", r.Intn(8))},
			Score: r.Float64(), Attrs: map[string]string{"k": fmt.Sprint(r.Int())}}
	}
	return out
}

func handleJSON(w http.ResponseWriter, req *http.Request) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	items := makeItems(r, 50+r.Intn(200))
	b, _ := json.Marshal(items)
	var back []item
	if version() == 1 {
		dec := json.NewDecoder(bytes.NewReader(b))
		_ = dec.Decode(&back)
	} else {
		_ = json.Unmarshal(b, &back)
	}
	w.Write(b[:64])
}

var words = strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu")
var reEmail = regexp.MustCompile(`([a-z]+)\.([a-z]+)@([a-z]+)\.(com|org|net)`)
var reWords = regexp.MustCompile(`\b(th|ka|la)[a-z]*a\b`)

func handleRegex(w http.ResponseWriter, req *http.Request) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	var sb strings.Builder
	for i := 0; i < 400; i++ {
		sb.WriteString(words[r.Intn(len(words))])
		if r.Intn(10) == 0 {
			fmt.Fprintf(&sb, " %s.%s@%s.org", words[r.Intn(len(words))], words[r.Intn(len(words))], words[r.Intn(len(words))])
		}
		sb.WriteByte(' ')
	}
	text := sb.String()
	n := len(reEmail.FindAllStringSubmatch(text, -1))
	if version() == 0 {
		n += len(reWords.FindAllString(text, -1))
	} else {
		n += strings.Count(text, "theta")
	}
	fmt.Fprint(w, n)
}

func handleSort(w http.ResponseWriter, req *http.Request) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	xs := make([]float64, 2000+r.Intn(6000))
	for i := range xs {
		xs[i] = r.NormFloat64()
	}
	if version() == 0 {
		sort.Float64s(xs)
	} else {
		sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	}
	fmt.Fprint(w, xs[len(xs)/2])
}

func handleGzip(w http.ResponseWriter, req *http.Request) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, 1+r.Intn(9))
	for i := 0; i < 200; i++ {
		fmt.Fprintf(zw, "%s %d %s\n", words[r.Intn(len(words))], r.Intn(100000), words[r.Intn(len(words))])
	}
	zw.Close()
	zr, _ := gzip.NewReader(&buf)
	n, _ := io.Copy(io.Discard, zr)
	fmt.Fprint(w, n)
}

func handleHash(w http.ResponseWriter, req *http.Request) {
	b := make([]byte, 16<<10)
	rand.Read(b)
	sum := sha256.Sum256(b)
	for i := 0; i < 20; i++ {
		sum = sha256.Sum256(sum[:])
	}
	fmt.Fprintf(w, "%x", sum[:4])
}

var tmpl = template.Must(template.New("page").Parse(
	`<ul>{{range .}}<li>{{.Name}} {{printf "%.3f" .Score}}{{range .Tags}} #{{.}}{{end}}</li>{{end}}</ul>`))

func handleTemplate(w http.ResponseWriter, req *http.Request) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	var buf bytes.Buffer
	_ = tmpl.Execute(&buf, makeItems(r, 20+r.Intn(80)))
	w.Write(buf.Bytes()[:32])
}

// A cache that grows and is evicted: the heap's in-use stacks change.
var cache = struct {
	sync.Mutex
	m map[int][]byte
}{m: map[int][]byte{}}

func handleCache(w http.ResponseWriter, req *http.Request) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	k := r.Intn(5000)
	cache.Lock()
	if _, ok := cache.m[k]; !ok {
		cache.m[k] = make([]byte, 256+r.Intn(4096))
	}
	if len(cache.m) > 3000 {
		for key := range cache.m {
			delete(cache.m, key)
			if len(cache.m) < 1500 {
				break
			}
		}
	}
	n := len(cache.m)
	cache.Unlock()
	fmt.Fprint(w, n)
}

// A contended lock: the mutex profile.
var hot sync.Mutex
var hotCount int64

func handleLock(w http.ResponseWriter, req *http.Request) {
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				hot.Lock()
				hotCount++
				x := 0.0
				for j := 0; j < 200; j++ {
					x += math.Sqrt(float64(j))
				}
				_ = x
				hot.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Fprint(w, atomic.LoadInt64(&hotCount))
}

// Channel hand-offs: the block profile.
func handleChan(w http.ResponseWriter, req *http.Request) {
	ch := make(chan int)
	done := make(chan struct{})
	go func() {
		for v := range ch {
			time.Sleep(time.Duration(v%3) * 100 * time.Microsecond)
		}
		close(done)
	}()
	for i := 0; i < 20; i++ {
		ch <- i
	}
	close(ch)
	<-done
	fmt.Fprint(w, "ok")
}

var routes = []struct {
	path string
	h    http.HandlerFunc
	// weight(t) = base + amp * sin(2π t / period + phase)
	base, amp, period, phase float64
}{
	{"/json", handleJSON, 3, 2, 1200, 0},
	{"/regex", handleRegex, 2, 1.5, 1700, 1},
	{"/sort", handleSort, 2, 1.5, 900, 2},
	{"/gzip", handleGzip, 1.5, 1, 2300, 3},
	{"/hash", handleHash, 1, 0.8, 1300, 4},
	{"/template", handleTemplate, 2, 1.5, 2900, 5},
	{"/cache", handleCache, 3, 1, 600, 0.5},
	{"/lock", handleLock, 0.5, 0.4, 1100, 1.5},
	{"/chan", handleChan, 0.5, 0.4, 1500, 2.5},
}

func pick(r *rand.Rand) string {
	t := time.Since(start).Seconds()
	total := 0.0
	ws := make([]float64, len(routes))
	for i, rt := range routes {
		w := rt.base + rt.amp*math.Sin(2*math.Pi*t/rt.period+rt.phase)
		if w < 0.05 {
			w = 0.05
		}
		ws[i] = w
		total += w
	}
	x := r.Float64() * total
	for i, w := range ws {
		if x < w {
			return routes[i].path
		}
		x -= w
	}
	return routes[len(routes)-1].path
}

func main() {
	flag.Parse()
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(100000) // ns: one sample per 100 µs blocked
	for _, rt := range routes {
		http.HandleFunc(rt.path, rt.h)
	}
	go func() { log.Fatal(http.ListenAndServe(*addr, nil)) }()
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < *workers; i++ {
		go func(i int) {
			r := rand.New(rand.NewSource(*seed + int64(i)))
			for {
				resp, err := client.Get("http://" + *addr + pick(r))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else {
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(*pause)
			}
		}(i)
	}
	select {}
}
