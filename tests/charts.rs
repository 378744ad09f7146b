//! The HTML report and the SVG charts: every report kind renders, every
//! chart is well-formed XML with a title and labelled axes, the same report
//! gives the same bytes, the page asks for nothing from the network, and a
//! real browser draws it (the browser test runs where Chromium is installed:
//! `.ci/run` installs it and runs the ignored tests).

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::util::{SSD_GOLDEN, losscope};

/// One command line per report kind, each run from fixtures/.
fn kinds(dir: &Path) -> Vec<(&'static str, Vec<String>)> {
    let report = dir.join("report.json").display().to_string();
    let moved = dir.join("moved.json").display().to_string();
    for (path, extra) in [(&report, None), (&moved, Some("1,2,4"))] {
        let mut cmd = losscope();
        cmd.args(["ce", "golden/ce.npz", "--format", "json", "-o", path]);
        if let Some(weight) = extra {
            cmd.args(["--weight", weight]);
        }
        cmd.assert().success();
    }
    let owned = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("ce", owned(&["ce", "golden/ce.npz"])),
        ("bce", owned(&["bce", "golden/bce.npz"])),
        ("focal", owned(&["focal", "focal/sigmoid_onehot.npz"])),
        ("focal-softmax", owned(&["focal", "focal/golden_softmax.npz", "--kind", "softmax"])),
        ("ssd", owned(&SSD_GOLDEN)),
        ("weights", owned(&["weights", "--targets", "golden/ce.npz:targets"])),
        ("diff", vec!["diff".into(), report, moved]),
    ]
}

fn output_of(args: &[String], extra: &[&str]) -> std::process::Output {
    losscope().args(args).args(extra).output().expect("losscope runs")
}

/// Asserts a run wrote its document: exit 0, or 1 for a diff that found
/// differences (as the fixtures' diff does).
fn assert_rendered(kind: &str, output: &std::process::Output) {
    let allowed: &[i32] = if kind == "diff" { &[0, 1] } else { &[0] };
    assert!(
        output.status.code().is_some_and(|c| allowed.contains(&c)),
        "{kind}: exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The chart names a report offers, from the error that lists them.
fn chart_names(args: &[String]) -> Vec<String> {
    let output = output_of(args, &["--format", "svg", "--chart", "no-such-chart"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let listed = stderr.split("(it has: ").nth(1).expect("the error lists the charts");
    listed.trim_end().trim_end_matches(')').split(", ").map(str::to_string).collect()
}

#[test]
fn every_chart_of_every_report_kind_is_well_formed_svg() {
    let dir = TempDir::new().unwrap();
    for (kind, args) in kinds(dir.path()) {
        let names = chart_names(&args);
        assert!(!names.is_empty(), "{kind} has no chart");
        for name in &names {
            let output = output_of(&args, &["--format", "svg", "--chart", name]);
            assert_rendered(kind, &output);
            let text = String::from_utf8(output.stdout).expect("UTF-8");
            let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            let root = doc.root_element();
            assert_eq!(root.tag_name().name(), "svg", "{kind} {name}");
            let has = |tag: &str| root.descendants().any(|n| n.tag_name().name() == tag);
            assert!(has("title"), "{kind} {name}: no title");
            let texts = root.descendants().filter(|n| n.tag_name().name() == "text").count();
            let empty = text.contains("nothing to show");
            assert!(texts >= 4 || empty, "{kind} {name}: {texts} text elements (title, axes, values)");
            let again = output_of(&args, &["--format", "svg", "--chart", name]);
            assert_eq!(again.stdout, text.as_bytes(), "{kind} {name}: not the same bytes twice");
        }
    }
}

#[test]
fn the_loss_reports_have_the_documented_charts() {
    let dir = TempDir::new().unwrap();
    let kinds = kinds(dir.path());
    let of = |kind: &str| chart_names(&kinds.iter().find(|(k, _)| *k == kind).unwrap().1);
    assert_eq!(of("ce"), ["classes", "p_t", "concentration", "calibration", "confusion"]);
    assert_eq!(of("bce"), ["classes", "p_t", "concentration", "calibration"]);
    assert_eq!(
        of("ssd"),
        ["classes", "p_t", "concentration", "calibration", "confusion", "groups", "images"]
    );
    assert_eq!(of("weights"), ["weights"]);
    assert_eq!(of("diff"), ["diff"]);
    // --help names every chart.
    let help = losscope().args(["ce", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for name in
        ["classes", "p_t", "concentration", "calibration", "confusion", "groups", "images", "weights", "diff"]
    {
        assert!(help.contains(name), "ce --help does not name the chart {name}");
    }
}

#[test]
fn html_is_one_offline_page_with_every_chart_and_the_same_bytes_each_time() {
    let dir = TempDir::new().unwrap();
    for (kind, args) in kinds(dir.path()) {
        let output = output_of(&args, &["--format", "html"]);
        assert_rendered(kind, &output);
        let html = String::from_utf8(output.stdout).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"), "{kind}");
        assert!(!html.contains("<script"), "{kind}: holds a script");
        let outside = html.replace("http://www.w3.org/2000/svg", "");
        assert!(!outside.contains("http://") && !outside.contains("https://"), "{kind}: names a URL");
        assert!(!outside.contains(" src=") && !outside.contains("<link"), "{kind}: loads something");
        for name in chart_names(&args) {
            assert!(html.contains(&format!("<figure id=\"chart-{name}\">")), "{kind}: no chart {name}");
        }
        assert_eq!(output_of(&args, &["--format", "html"]).stdout, html.as_bytes(), "{kind}: bytes differ");
    }
}

#[test]
fn chart_flags_are_checked() {
    let fails = |args: &[&str], want: &str| {
        let output = losscope().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    };
    fails(&["ce", "golden/ce.npz", "--format", "svg"], "--chart NAME");
    fails(&["ce", "golden/ce.npz", "--chart", "classes"], "is for --format svg");
    fails(
        &["ce", "golden/ce.npz", "--format", "svg", "--chart", "images"],
        "it has: classes, p_t, concentration",
    );
}

/// A class name with markup and control characters stays text.
#[test]
fn user_text_cannot_become_markup() {
    let dir = TempDir::new().unwrap();
    let names = dir.path().join("names.txt");
    std::fs::write(&names, "<b>cat</b>\ndog\u{1b}[31m\nbird\n").unwrap();
    let output = losscope()
        .args(["ce", "golden/ce.npz", "--format", "html", "--class-names", names.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success());
    let html = String::from_utf8_lossy(&output.stdout);
    assert!(html.contains("&lt;b&gt;cat&lt;/b&gt;") && !html.contains("<b>cat"), "markup reached the page");
    assert!(!html.contains('\u{1b}'), "a control character reached the page");
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Renders each kind's HTML in headless Chromium: the screenshot must not
/// be blank, and the page must log no error and load nothing.
#[test]
#[ignore = "needs Chromium; .ci/run installs it and runs this test"]
fn a_real_browser_draws_every_report_kind() {
    let browser = chromium().expect("Chromium is installed (apt-get install chromium)");
    let dir = TempDir::new().unwrap();
    for (kind, args) in kinds(dir.path()) {
        let page = dir.path().join(format!("{kind}.html"));
        let shot = dir.path().join(format!("{kind}.png"));
        let output = output_of(&args, &["--format", "html", "-o", page.to_str().unwrap()]);
        assert_rendered(kind, &output);
        let run = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1000,1400",
            ])
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("Chromium runs");
        let log = String::from_utf8_lossy(&run.stderr);
        let page_errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("CONSOLE") || l.contains("net::ERR") || l.contains("Failed to load"))
            .collect();
        assert!(page_errors.is_empty(), "{kind}: the page logged\n{}", page_errors.join("\n"));
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&shot).unwrap_or_else(|e| panic!("{kind}: no screenshot: {e}\n{log}")),
        ));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
        let info = reader.next_frame(&mut pixels).expect("a frame");
        let channels = info.color_type.samples();
        let pixels = &pixels[..info.buffer_size()];
        let inked = pixels.chunks(channels).filter(|p| p[..3].iter().any(|&v| v < 200)).count();
        let coloured = pixels.chunks(channels).filter(|p| p[2] > p[0].saturating_add(60)).count();
        let total = pixels.len() / channels;
        assert!(inked * 100 > total, "{kind}: only {inked} of {total} pixels are not blank");
        assert!(coloured > 500, "{kind}: no chart colour on the page ({coloured} blue pixels)");
    }
}
