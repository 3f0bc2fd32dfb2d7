//! The web UI in a real headless Chromium (see `common::browser`), against
//! the real binary: profiles whose stacks change between the two halves of
//! an hour, then the page's type picker, autocompletion, totals chart and
//! group by, a click and drags selecting profiles, a diff marking the grown
//! function, search, focus, sandwich, reload and Back, the downloads, the
//! page without JavaScript, and a function name that is an HTML tag.
//!
//! A screenshot of the diff view is written to
//! `target/tmp/ui-diff.png` (the `CARGO_TARGET_TMPDIR`).

mod common;

use common::browser::Browser;
use common::daemon::*;
use profstore::engine::suite::{profile, TestSample};
use serde_json::{json, Value};

/// A function name that is markup: it must show as text and create nothing.
const EVIL: &str = "<img src=x onerror=alert(1)>";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A CPU profile at `t` of `stacks`, each leaf first with its sample count
/// (10 ms of CPU each).
fn cpu_profile(t: i64, stacks: &[(&[&str], i64)]) -> Vec<u8> {
    let samples: Vec<TestSample> = stacks.iter().map(|&(s, n)| (s, n, &[][..])).collect();
    gzip(&profstore::pprof::encode(&profile(t, &samples)))
}

fn iso(ms: i64) -> String {
    profstore::model::time::format_time(ms)
}

/// What the page shows of the profile: the status line and every frame with
/// its classes, sorted; compared across reloads.
const VIEW: &str = "return [document.getElementById('profile-status').textContent, \
    location.search, \
    [...document.querySelectorAll('.fg-node')].map(n => n.dataset.name + '|' + n.className).sort().join('\\n')]";

#[test]
fn the_web_ui_in_a_real_browser() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let srv = Server::start(&[]);
    // 12 profiles per instance over the last hour, every 5 minutes; in the
    // second half `grown_fn` takes 20× what it took in the first.
    let now = now_ms();
    let start = now - 60 * 60_000;
    for i in 0..12 {
        let t = start + i * 5 * 60_000 + 60_000;
        let late = i >= 6;
        let grown = if late { 200 } else { 10 };
        // Instance b runs at half the rate of a.
        for (instance, k) in [("a", 2), ("b", 1)] {
            let body = cpu_profile(
                t,
                &[
                    (&["work_a", "handler", "main"], 100 * k / 2),
                    (&["grown_fn", "handler", "main"], grown * k / 2),
                    (&[EVIL, "main"], 6 * k / 2),
                ],
            );
            let r = srv.write(&format!("{{job=\"api\",instance=\"{instance}\"}}"), &body);
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let types = srv.data("/api/v1/profile_types");
    let cpu = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["sample_type"] == "cpu")
        .unwrap_or_else(|| panic!("no cpu type in {types}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let query = format!("{cpu}{{job=\"api\"}}");
    let base = format!("http://{}", srv.addr);
    let url = format!(
        "{base}/ui/?{}",
        qs(&[("query", &query), ("from", &iso(start)), ("to", &iso(now))])
    );

    // The page loads, with the type picker set from the URL.
    browser.goto(&url);
    browser.wait_for("the first render", "document.body.dataset.renders >= 1");
    assert_eq!(
        browser.exec("return document.getElementById('type').value", json!([])),
        cpu
    );
    let groups = browser.exec(
        "return [...document.querySelectorAll('#type optgroup')].map(g => g.label)",
        json!([]),
    );
    assert!(
        groups.as_array().unwrap().contains(&json!("process_cpu")),
        "{groups}"
    );
    assert!(
        browser.exec(
            "return document.getElementById('ssr').classList.contains('hidden')",
            json!([])
        ) == true
    );

    // The totals chart: one line per instance, then one per job.
    browser.wait_for(
        "two series lines",
        "document.querySelectorAll('#chart .series-line').length === 2",
    );
    browser.click("#groupby input[value=job]");
    browser.wait_for("one summed line", "document.querySelectorAll('#chart .series-line').length === 1 && location.search.includes('group_by=job')");
    let legend = browser.exec(
        "return document.getElementById('legend').textContent",
        json!([]),
    );
    assert_eq!(legend, "{job=\"api\"}");
    browser.back();
    browser.wait_for("Back restores two lines", "document.querySelectorAll('#chart .series-line').length === 2 && !location.search.includes('group_by')");

    // Autocompletion of label names, then of a label's values.
    browser.clear("#selector");
    browser.type_into("#selector", "{");
    browser.wait_for("label name suggestions", "[...document.querySelectorAll('#suggest li')].map(l => l.textContent).join(',') === 'instance,job'");
    browser.type_into("#selector", "ins\u{E007}");
    browser.wait_for(
        "the name completed",
        "document.getElementById('selector').value.startsWith('{instance=\"')",
    );
    browser.wait_for(
        "value suggestions",
        "[...document.querySelectorAll('#suggest li')].map(l => l.textContent).join(',') === 'a,b'",
    );
    browser.type_into("#selector", "\u{E015}\u{E007}");
    browser.wait_for(
        "the value completed",
        "document.getElementById('selector').value.startsWith('{instance=\"b\"')",
    );
    // Back to the whole job (Enter in the selector box runs the query).
    browser.clear("#selector");
    browser.type_into("#selector", "{job=\"api\"}\u{E00C}\u{E007}");
    browser.wait_for("the query ran", "document.body.dataset.renders >= 3 && document.querySelectorAll('#chart .series-line').length === 2");

    // Merge of the whole range: every function, totals as the API's.
    let merge_total = {
        let r = srv.data(&format!(
            "/api/v1/profile/merge?{}",
            qs(&[
                ("query", &query),
                ("start", &iso(start)),
                ("end", &iso(now)),
                ("format", "flamegraph")
            ])
        ));
        r["root"]["total"].as_i64().unwrap()
    };
    browser.wait_for(
        "the flame graph",
        "document.querySelector('.fg-node[data-name=\"grown_fn\"]')",
    );
    let status = browser.exec(
        "return document.getElementById('profile-status').textContent",
        json!([]),
    );
    assert!(
        status
            .as_str()
            .unwrap()
            .starts_with("Merge of the whole range"),
        "{status}"
    );
    let shown_total = browser.exec(
        "return fetch(document.querySelector('#downloads a[data-format=flamegraph]').href).then(r => r.json()).then(j => j.data.root.total)",
        json!([]),
    );
    assert_eq!(shown_total, json!(merge_total));

    // The markup function name is text: no element made of it, no alert.
    let evil = browser.exec(
        "return [...document.querySelectorAll('.fg-node')].filter(n => n.textContent === arguments[0]).length",
        json!([EVIL]),
    );
    assert_eq!(evil, json!(1));
    assert_eq!(
        browser.exec(
            "return document.querySelectorAll('img[src=x]').length",
            json!([])
        ),
        json!(0)
    );
    let row = browser.exec(
        "return [...document.querySelectorAll('#top-table td.name')].some(td => td.textContent === arguments[0])",
        json!([EVIL]),
    );
    assert_eq!(row, json!(true));

    // A click on the chart selects one step's profile.
    browser.drag("#chart-svg", (-200, 0), (-200, 0));
    browser.wait_for("a one-step selection", "location.search.includes('a_from') && document.getElementById('profile-status').textContent.startsWith('Merge of selection A')");
    let a_len = browser.exec(
        "const q = new URLSearchParams(location.search); return Date.parse(q.get('a_to')) - Date.parse(q.get('a_from'))",
        json!([]),
    );
    assert!(a_len.as_i64().unwrap() < 60_000, "one step, got {a_len} ms");

    // A drag over the first half selects A, one over the second half B:
    // the diff marks grown_fn grown and work_a unchanged.
    browser.drag("#chart-svg", (-640, 0), (-40, 0));
    browser.wait_for("selection A", "document.getElementById('sel-a') && document.getElementById('profile-status').textContent.startsWith('Merge of selection A')");
    browser.click("#brush-b");
    browser.drag("#chart-svg", (40, 0), (640, 0));
    browser.wait_for("the diff", "document.getElementById('profile-status').textContent.startsWith('Diff of B against A') && document.getElementById('diff-legend')");
    browser.wait_for("grown_fn marked grown", "document.querySelector('#flame-pane .fg-node[data-name=\"grown_fn\"]').classList.contains('grown')");
    let work = browser.exec(
        "return document.querySelector('#flame-pane .fg-node[data-name=\"work_a\"]').className",
        json!([]),
    );
    assert!(!work.as_str().unwrap().contains("grown"), "{work}");
    let delta = browser.exec(
        "return [...document.querySelectorAll('#top-table th')].map(th => th.textContent).join('|')",
        json!([]),
    );
    assert!(
        delta.as_str().unwrap().contains("base flat") && delta.as_str().unwrap().contains("Δ flat"),
        "{delta}"
    );
    // Proportional mode and the colour-blind palette keep the verdicts and
    // change the colours.
    let red = browser.exec("return document.querySelector('#flame-pane .fg-node[data-name=\"grown_fn\"]').style.background", json!([]));
    browser.click("#diff-mode");
    browser.wait_for("proportional mode", "location.search.includes('diff=prop') && document.querySelector('#flame-pane .fg-node[data-name=\"grown_fn\"]').classList.contains('grown')");
    browser.click("#palette");
    browser.wait_for("the colour-blind palette", "location.search.includes('palette=cb') && document.querySelector('#flame-pane .fg-node[data-name=\"grown_fn\"]').classList.contains('grown')");
    let orange = browser.exec("return document.querySelector('#flame-pane .fg-node[data-name=\"grown_fn\"]').style.background", json!([]));
    assert_ne!(red, orange);
    browser.back();
    browser.back();
    browser.wait_for(
        "absolute, red and green again",
        "!location.search.includes('diff=') && !location.search.includes('palette=') \
         && document.querySelector('#flame-pane .fg-node[data-name=\"grown_fn\"]').classList.contains('grown')",
    );
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-diff.png"),
        browser.screenshot(),
    )
    .unwrap();

    // Search highlights and filters, and says what share matched.
    browser.type_into("#search", "grown");
    browser.wait_for("search", "location.search.includes('search=grown') && document.querySelectorAll('#flame-pane .fg-node.match').length === 1");
    let share = browser.exec(
        "return document.getElementById('search-share').textContent",
        json!([]),
    );
    assert!(
        share.as_str().unwrap().starts_with("matched ") && share.as_str().unwrap().ends_with("%)"),
        "{share}"
    );
    let rows = browser.exec(
        "return [...document.querySelectorAll('#top-table td.name')].map(td => td.textContent)",
        json!([]),
    );
    assert_eq!(rows, json!(["grown_fn"]));
    browser.clear("#search");
    browser.type_into("#search", " \u{E003}");
    browser.wait_for("search cleared", "!location.search.includes('search=') && document.querySelectorAll('#flame-pane .fg-node.match').length === 0");

    // Focus on `handler`, the breadcrumb, and back.
    browser.click("#flame-pane .fg-node[data-name=\"handler\"]");
    browser.wait_for("focus", "location.search.includes('focus=') && document.getElementById('breadcrumb').textContent.includes('handler')");
    let widths = browser.exec(
        "const n = document.querySelector('#flame-pane .fg-node[data-name=\"handler\"]'); return [n.offsetWidth, n.parentElement.offsetWidth]",
        json!([]),
    );
    assert!(
        widths[0].as_i64().unwrap() + 2 >= widths[1].as_i64().unwrap(),
        "focused node fills the width: {widths}"
    );
    assert_eq!(
        browser.exec(
            "return document.querySelectorAll('#flame-pane .fg-node[data-name=\"main\"]').length",
            json!([])
        ),
        json!(1)
    );

    // Reload restores the same view, exactly.
    let before = browser.exec(VIEW, json!([]));
    browser.refresh();
    browser.wait_for(
        "the reloaded page",
        "document.body.dataset.renders >= 1 && document.querySelector('#flame-pane .fg-node')",
    );
    let after = browser.exec(VIEW, json!([]));
    assert_eq!(before, after);
    browser.click("#breadcrumb a.crumb");
    browser.wait_for("unfocused", "!location.search.includes('focus=')");

    // The sandwich view of `handler`: its caller above, its callees below.
    browser.exec(
        "document.querySelector('#top-table td.name a').scrollIntoView()",
        json!([]),
    );
    browser.exec(
        "[...document.querySelectorAll('#top-table td.name a')].find(a => a.textContent === 'handler').click()",
        json!([]),
    );
    browser.wait_for("the sandwich", "document.getElementById('sandwich')");
    let callers = browser.exec("return [...document.querySelectorAll('#sandwich-callers .fg-node')].map(n => n.dataset.name).sort()", json!([]));
    assert_eq!(callers, json!(["handler", "main"]));
    let callees = browser.exec("return [...document.querySelectorAll('#sandwich-callees .fg-node')].map(n => n.dataset.name).sort()", json!([]));
    assert_eq!(callees, json!(["grown_fn", "handler", "work_a"]));

    // Downloads of this view: the pprof is gzip, the command names the diff.
    let href = browser.exec(
        "return document.querySelector('#downloads a[data-format=pprof]').getAttribute('href')",
        json!([]),
    );
    let href = href.as_str().unwrap();
    assert!(href.starts_with("/api/v1/profile/diff?"), "{href}");
    let r = srv.get(href);
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..2], &[0x1f, 0x8b]);
    let cmd = browser.exec(
        "return document.getElementById('pprof-cmd').value",
        json!([]),
    );
    assert!(
        cmd.as_str()
            .unwrap()
            .starts_with("go tool pprof -http=: 'http://"),
        "{cmd}"
    );

    // The page without JavaScript: the form, the top table naming the top
    // function, the SVG flame graph, and the markup name escaped.
    let r = srv.get(&format!(
        "/ui/?{}",
        qs(&[("query", &query), ("from", &iso(start)), ("to", &iso(now))])
    ));
    assert_eq!(r.status, 200);
    let csp = r
        .header("content-security-policy")
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = r.text();
    let first_row = html
        .split("<tbody><tr><td class=\"name\">")
        .nth(1)
        .unwrap_or_default();
    assert!(
        first_row.starts_with("grown_fn</td>"),
        "{}",
        &html[..html.len().min(3000)]
    );
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains(EVIL));
    assert!(html.contains("<img id=\"ssr-flame\""));
    let svg_src = html
        .split("<img id=\"ssr-flame\" alt=\"flame graph\" src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let svg = srv.get(&svg_src);
    assert_eq!(svg.status, 200);
    assert!(svg.text().contains("grown_fn"));
    let bad = srv.get("/ui/?query=rate(x%5B5m%5D)");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("class=\"error\""));

    // The targets page.
    browser.goto(&format!("{base}/ui/targets"));
    browser.wait_for("the targets page", "document.getElementById('targets') && document.getElementById('targets').textContent.includes('No scrape targets')");
    let _: Value = browser.exec("return 1", json!([]));
}
