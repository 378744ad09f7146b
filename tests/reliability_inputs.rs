//! Hostile inputs (docs/reliability.md): sizes taken from a file that would
//! exhaust memory, files that are not regular files, inputs that change
//! while they are read, and layouts that used to cost several copies. Every
//! case drives the real binary on a real file; every run is bounded in time,
//! so a hang fails the test instead of stalling the suite; memory is
//! measured as the child's peak resident set (`VmHWM`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bad_input::{LIMIT, Scratch, describe, rejects, run, violations};
use crate::util::{SSD_GOLDEN, fixtures};
use crate::util::{i64_npy, npy, npy_with_header};

// --------------------------------------------------------------------------
// helpers
// --------------------------------------------------------------------------

/// The class limit (`tally::MAX_CLASSES`), as the messages print it.
const MAX_CLASSES: usize = 1 << 20;

/// Asserts that `losscope args` succeeds; returns its stdout.
fn succeeds(args: &[&str]) -> String {
    let output = run(args);
    assert!(output.status.success(), "{}", describe(args, &output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{}", describe(args, &output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes an `.npy` header for `descr` and `shape` (C order unless
/// `fortran`), then extends the file to its full size without writing the
/// payload: a sparse file of zeros, free on disk and quick to make.
fn sparse_npy(dir: &Scratch, name: &str, descr: &str, shape: &[usize], fortran: bool) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let order = if fortran { "True" } else { "False" };
    let header = npy_with_header(
        &format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {tuple}, }}"),
        &[],
    );
    let size: usize = descr[2..].parse().expect("a descr such as <f4");
    let path = dir.file(name, &header);
    let file = std::fs::OpenOptions::new().write(true).open(&path).expect("the scratch file");
    file.set_len((header.len() + size * shape.iter().product::<usize>()) as u64).expect("extend the file");
    path
}

/// A FIFO in the folder (nobody ever writes to it).
fn fifo(dir: &Scratch, name: &str) -> String {
    let path = dir.path().join(name);
    let c_path = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temporary path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
    path.to_str().expect("a UTF-8 temporary path").to_string()
}

/// A run of the binary whose peak resident memory is measured.
struct Measured {
    output: Output,
    /// The largest `VmHWM` seen in `/proc/<pid>/status`, in bytes.
    peak: u64,
}

/// The peak resident set of a running process so far (`VmHWM`), in bytes.
fn high_water_mark(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs losscope with `args`, killed after [`LIMIT`], sampling its peak
/// resident set every millisecond. `VmHWM` belongs to the process's own
/// address space since its exec, so unlike `ru_maxrss` it does not inherit
/// the (large) test process's; it only grows, so a sample taken any time
/// after the peak sees it. A run too short to be sampled reports 0.
fn run_measured(args: &[&str]) -> Measured {
    let mut child = spawn(args);
    let pid = child.id();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if let Some(now) = high_water_mark(pid) {
            peak = peak.max(now);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("losscope {} was killed after {LIMIT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let output =
        Output { status, stdout: stdout.join().expect("stdout"), stderr: stderr.join().expect("stderr") };
    Measured { output, peak }
}

const MIB: u64 = 1 << 20;

/// Polls `/proc/<pid>/maps` until `path` is mapped by the process; false
/// when the process ended first.
fn wait_until_mapped(child: &mut std::process::Child, path: &str) -> bool {
    let maps = format!("/proc/{}/maps", child.id());
    let started = Instant::now();
    while started.elapsed() < LIMIT {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        if std::fs::read_to_string(&maps).is_ok_and(|text| text.contains(path)) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("{path} was not mapped within {LIMIT:?}");
}

/// Waits for a spawned child, killing it after [`LIMIT`].
fn finish(mut child: std::process::Child) -> Output {
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("the output")
}

fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_losscope"))
        .args(args)
        .current_dir(fixtures())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("losscope starts")
}

// --------------------------------------------------------------------------
// sizes taken from an input
// --------------------------------------------------------------------------

/// 128-byte files whose class axis is longer than any tally can be: each
/// loss refuses them, naming the limit, before allocating a per-class table.
#[test]
fn a_huge_class_axis_in_a_tiny_file_is_refused_by_every_loss() {
    let dir = Scratch::new();
    let limit = MAX_CLASSES.to_string();
    for classes in [1usize << 40, 100_000_000, 10_000_000] {
        let logits = dir.file(&format!("logits_{classes}.npy"), &npy("<f4", &[0, classes], &[]));
        let targets = dir.file("targets.npy", &i64_npy(&[0], &[]));
        let loc = dir.file("loc.npy", &npy("<f4", &[0, 0, 4], &[]));
        let conf = dir.file(&format!("conf_{classes}.npy"), &npy("<f4", &[0, 0, classes], &[]));
        let truths = dir.file("truths.json", b"[]");
        let class_count = format!("{classes} classes");
        for args in [
            vec!["ce", "--logits", &logits, "--targets", &targets],
            vec!["bce", "--logits", &logits, "--targets", &logits],
            vec!["focal", "--logits", &logits, "--targets", &targets],
            vec!["focal", "--kind", "softmax", "--logits", &logits, "--targets", &targets],
            vec!["ssd", "--loc", &loc, "--conf", &conf, "--priors", "ssd300-voc", "--truths", &truths],
        ] {
            let named =
                if args[0] == "ssd" { format!("{conf} (conf)") } else { format!("{logits} (logits)") };
            rejects(&args, &[&named, &class_count, &limit]);
        }
    }
}

/// A `[1, 10**7]` logits file with `--format json` aborted at 3 GB while
/// building a 10-million-row report; it is refused at the class limit.
#[test]
fn ten_million_classes_in_one_row_are_refused_before_the_report() {
    let dir = Scratch::new();
    let logits = sparse_npy(&dir, "wide.npy", "<f4", &[1, 10_000_000], false);
    let targets = dir.file("targets.npy", &i64_npy(&[1], &[0]));
    rejects(
        &["ce", "--logits", &logits, "--targets", &targets, "--format", "json"],
        &[&format!("{logits} (logits)"), "10000000 classes", &MAX_CLASSES.to_string()],
    );
}

/// The largest language-model vocabularies (128k to 256k tokens) are well
/// within the limit, and so is the limit itself.
#[test]
fn vocabularies_up_to_the_class_limit_are_evaluated() {
    let dir = Scratch::new();
    let targets = dir.file("targets.npy", &i64_npy(&[2], &[7, 255_999]));
    let logits = sparse_npy(&dir, "vocab.npy", "<f4", &[2, 256_000], false);
    let table = succeeds(&["ce", "--logits", &logits, "--targets", &targets, "--top", "2", "-q"]);
    // Uniform logits: the loss is ln(256000).
    assert!(table.contains("12.45"), "{table}");
    let at_limit = sparse_npy(&dir, "limit.npy", "<f4", &[1, MAX_CLASSES], false);
    let one = dir.file("one.npy", &i64_npy(&[1], &[3]));
    succeeds(&["ce", "--logits", &at_limit, "--targets", &one, "--top", "1", "-q"]);
}

#[test]
fn weights_refuses_a_class_count_beyond_the_limit() {
    let dir = Scratch::new();
    let targets = dir.file("targets.npy", &i64_npy(&[3], &[0, 1, 2]));
    rejects(
        &["weights", "--targets", &targets, "--classes", "1000000000000"],
        &["--classes 1000000000000", &MAX_CLASSES.to_string()],
    );
    let far = dir.file("far.npy", &i64_npy(&[2], &[0, 1 << 40]));
    rejects(&["weights", "--targets", &far], &[&format!("{far} (targets)"), "1099511627776", "[1]"]);
}

/// `--threads 20000` started 20,000 threads and ran until it was killed.
#[test]
fn thread_counts_beyond_the_limit_are_refused() {
    let started = Instant::now();
    rejects(&["ce", "golden/ce.npz", "--threads", "20000"], &["--threads 20000", "1024"]);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    succeeds(&["ce", "golden/ce.npz", "--threads", "64"]);
}

/// A sparse 100 GB JSON file made losscope reserve 100 GB and abort. Text
/// inputs are refused above 1 GiB before a byte is read, in every role.
#[test]
fn a_sparse_100_gb_json_file_is_refused_before_it_is_read() {
    let dir = Scratch::new();
    let huge = dir.file("huge.json", b"");
    std::fs::OpenOptions::new().write(true).open(&huge).unwrap().set_len(100 << 30).unwrap();
    let report = dir.file("report.json", b"{}");
    let expected = ["1.0 GiB", "100.0 GiB"];
    let named = |role: &str| format!("{huge} ({role})");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["ce", "--logits", &huge, "--targets", "golden/ce.npz:targets"], named("logits")),
        (vec!["ce", &huge], named("bundle")),
        (vec!["ce", "golden/ce.npz", "--class-names", &huge], named("class names")),
        (vec!["diff", &huge, &report], named("baseline")),
        (vec!["weights", "--targets", &huge], named("targets")),
        (
            vec![
                "ssd",
                "--loc",
                "ssd/golden/loc.npy",
                "--conf",
                "ssd/golden/conf.npy",
                "--priors",
                "ssd/golden/priors.npy",
                "--truths",
                &huge,
            ],
            named("truths"),
        ),
    ];
    for (args, named) in cases {
        // A diff report has a lower limit of its own (128 MiB).
        let limit = if args[0] == "diff" { "128.0 MiB" } else { expected[0] };
        rejects(&args, &[&named, limit, expected[1]]);
    }
}

/// A sparse 100 GB `.npz` ending in a zip64 directory record that claims a
/// billion members: the zip reader, finding the record inconsistent,
/// searched backwards through the whole file for another one (100 GB read
/// at a few hundred MB/s). The search is cut off after 64 MiB.
#[test]
fn a_sparse_100_gb_npz_is_not_read_to_its_end() {
    let dir = Scratch::new();
    let size: u64 = 100 << 30;
    let trailer_at = size - 98;
    let (entries, directory_at) = (1_000_000_000u64, 90u64 << 30);
    let mut trailer = Vec::new();
    // zip64 end of central directory: signature, record size, versions, disks,
    // entries on this disk and in all, directory size and offset.
    trailer.extend(0x0606_4b50u32.to_le_bytes());
    trailer.extend(44u64.to_le_bytes());
    trailer.extend([45, 0, 45, 0]);
    trailer.extend([0; 8]);
    trailer.extend(entries.to_le_bytes());
    trailer.extend(entries.to_le_bytes());
    trailer.extend((trailer_at - directory_at).to_le_bytes());
    trailer.extend(directory_at.to_le_bytes());
    // Its locator, then the classic record pointing at it.
    trailer.extend(0x0706_4b50u32.to_le_bytes());
    trailer.extend(0u32.to_le_bytes());
    trailer.extend(trailer_at.to_le_bytes());
    trailer.extend(1u32.to_le_bytes());
    trailer.extend(0x0605_4b50u32.to_le_bytes());
    trailer.extend([0xFF; 16]);
    trailer.extend([0, 0]);
    assert_eq!(trailer.len(), 98);
    let archive = dir.file("huge.npz", b"");
    let file = std::fs::OpenOptions::new().write(true).open(&archive).unwrap();
    file.set_len(trailer_at).unwrap();
    file.write_all_at(&trailer, trailer_at).unwrap();
    drop(file);
    for (args, role) in [
        (vec!["ce", "--logits", &archive, "--targets", "golden/ce.npz:targets"], "logits"),
        (vec!["ce", &archive], "bundle"),
    ] {
        let started = Instant::now();
        rejects(&args, &[&format!("{archive} ({role})"), "not a readable .npz (zip) archive"]);
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    }
}

// --------------------------------------------------------------------------
// files that are not regular files
// --------------------------------------------------------------------------

/// A FIFO nobody writes to hung every reader forever. It is refused at once,
/// in every role an input can play.
#[test]
fn a_fifo_is_refused_at_once_in_every_role() {
    let dir = Scratch::new();
    let npy_fifo = fifo(&dir, "pipe.npy");
    let json_fifo = fifo(&dir, "pipe.json");
    let bundle_fifo = fifo(&dir, "pipe.npz");
    let report = dir.file("report.json", succeeds(&["ce", "golden/ce.npz", "--format", "json"]).as_bytes());
    let ssd = |flag: &'static str, value: &str| -> Vec<String> {
        let mut args: Vec<String> = SSD_GOLDEN.iter().map(|s| s.to_string()).collect();
        let at = args.iter().position(|a| a == flag).expect("the flag") + 1;
        args[at] = value.to_string();
        args
    };
    let owned = |args: &[&str]| -> Vec<String> { args.iter().map(|s| s.to_string()).collect() };
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            owned(&["ce", "--logits", &npy_fifo, "--targets", "golden/ce.npz:targets"]),
            format!("{npy_fifo} (logits)"),
        ),
        (
            owned(&["ce", "--logits", "golden/ce.npz:logits", "--targets", &json_fifo]),
            format!("{json_fifo} (targets)"),
        ),
        (owned(&["ce", "golden/ce.npz", "--weight", &npy_fifo]), format!("{npy_fifo} (weight)")),
        (owned(&["ce", &bundle_fifo]), format!("{bundle_fifo} (bundle)")),
        (owned(&["ce", "golden/ce.npz", "--class-names", &json_fifo]), format!("{json_fifo} (class names)")),
        (ssd("--truths", &json_fifo), format!("{json_fifo} (truths)")),
        (ssd("--truths", &npy_fifo), format!("{npy_fifo} (truths)")),
        (ssd("--priors", &npy_fifo), format!("{npy_fifo} (priors)")),
        (owned(&["diff", &json_fifo, &report]), format!("{json_fifo} (baseline)")),
        (owned(&["diff", &report, &json_fifo]), format!("{json_fifo} (current)")),
        (owned(&["weights", "--targets", &npy_fifo]), format!("{npy_fifo} (targets)")),
    ];
    for (args, named) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rejects(&args, &[&named, "FIFO", "not a regular file"]);
    }
}

/// /dev/zero and /dev/urandom were read as empty files (and `diff` read
/// 4 GB of /dev/zero); a /proc file was called empty. Devices are refused
/// as not regular files, virtual files as what they are.
#[test]
fn devices_and_virtual_files_are_named_for_what_they_are() {
    for device in ["/dev/zero", "/dev/urandom"] {
        rejects(
            &["ce", "--logits", device, "--targets", "golden/ce.npz:targets"],
            &[&format!("{device} (logits)"), "character device", "not a regular file"],
        );
        rejects(&["ce", device], &[&format!("{device} (bundle)"), "character device"]);
    }
    let started = Instant::now();
    rejects(&["diff", "/dev/zero", "golden/ce.npz"], &["/dev/zero (baseline)", "character device"]);
    assert!(started.elapsed() < Duration::from_secs(10), "diff took {:?}", started.elapsed());
    if Path::new("/proc/self/status").exists() {
        rejects(
            &["ce", "--logits", "/proc/self/status", "--targets", "golden/ce.npz:targets"],
            &["/proc/self/status (logits)", "virtual file", "copy it to a regular file"],
        );
    }
}

/// `--class-names` given a directory said "no such file".
#[test]
fn class_names_naming_a_directory_say_it_is_one() {
    let dir = Scratch::new();
    let folder = dir.path().to_str().unwrap().to_string();
    rejects(
        &["ce", "golden/ce.npz", "--class-names", &folder],
        &[&format!("{folder} (class names)"), "directory"],
    );
}

// --------------------------------------------------------------------------
// inputs that change while they are read
// --------------------------------------------------------------------------

/// A mapped `.npy` truncated while the pass reads it raised SIGBUS (exit
/// 135, no message). The file is sparse and large enough that the pass is
/// still running when the truncation lands, right after the file is
/// mapped; should a run finish first anyway, it is tried again.
#[test]
fn an_input_truncated_during_the_run_is_reported_as_changed() {
    let dir = Scratch::new();
    let targets = dir.file("targets.npy", &i64_npy(&[16384], &[0; 16384]));
    let mut outcomes = Vec::new();
    for attempt in 0..3 {
        let logits = sparse_npy(&dir, &format!("logits{attempt}.npy"), "<f4", &[16384, 1024], false);
        let args = ["ce", "--logits", &logits, "--targets", &targets, "--threads", "1", "-q"];
        let mut child = spawn(&args);
        assert!(wait_until_mapped(&mut child, &logits), "losscope ended before mapping {logits}");
        std::fs::OpenOptions::new().write(true).open(&logits).unwrap().set_len(128).unwrap();
        let output = finish(child);
        if output.status.success() {
            outcomes.push("finished before the truncation".to_string());
            continue;
        }
        let problems =
            violations(&output, &[&format!("{logits} (logits)"), "input changed while it was being read"]);
        assert!(problems.is_empty(), "{}\n{}", problems.join("; "), describe(&args, &output));
        return;
    }
    panic!("the truncation never landed during the pass: {outcomes:?}");
}

/// Labels rewritten in place after they were checked made the pass index
/// out of bounds (a panic in cross_entropy.rs). Checked labels are copied,
/// so the run either checks the new labels (and refuses them) or computes
/// with the ones it checked; it never panics. The rewrite comes 200 ms
/// after the targets are mapped: past the check, while the pass (two
/// seconds in a debug build) is running, where it used to panic.
#[test]
fn labels_rewritten_during_the_run_cannot_crash_it() {
    let dir = Scratch::new();
    let rows = 16_384;
    for attempt in 0..2 {
        let logits = sparse_npy(&dir, &format!("logits{attempt}.npy"), "<f4", &[rows, 256], false);
        let targets = dir.file(&format!("targets{attempt}.npy"), &i64_npy(&[rows], &vec![0; rows]));
        let args = ["ce", "--logits", &logits, "--targets", &targets, "--threads", "1", "-q"];
        let mut child = spawn(&args);
        if !wait_until_mapped(&mut child, &targets) {
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
        // Every label becomes 1000, out of range for 256 classes.
        let header_len = i64_npy(&[rows], &[]).len() as u64;
        let bad: Vec<u8> = std::iter::repeat_n(1000i64.to_le_bytes(), rows).flatten().collect();
        let file = std::fs::OpenOptions::new().write(true).open(&targets).unwrap();
        file.write_all_at(&bad, header_len).unwrap();
        drop(file);
        let output = finish(child);
        let context = describe(&args, &output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{context}");
        match output.status.code() {
            Some(0) => assert!(output.stdout.len() > 100, "{context}"),
            Some(2) => {
                let problems =
                    violations(&output, &[&format!("{targets} (targets)"), "label 1000", "256 classes"]);
                assert!(problems.is_empty(), "{}\n{context}", problems.join("; "));
            }
            _ => panic!("neither a report nor a refusal\n{context}"),
        }
    }
}

// --------------------------------------------------------------------------
// memory beyond the work
// --------------------------------------------------------------------------

/// A Fortran-order or big-endian `.npy` was held twice (and its map on
/// top): a 4 GB file took 7.8 GB. It is decoded once, as it is read.
#[test]
fn fortran_order_and_big_endian_npy_are_decoded_once() {
    let dir = Scratch::new();
    let shape = [4096usize, 4096];
    let payload = (shape[0] * shape[1] * 4) as u64;
    for (name, descr, fortran) in [("fortran.npy", "<i4", true), ("big_endian.npy", ">i4", false)] {
        let targets = sparse_npy(&dir, name, descr, &shape, fortran);
        let args = ["weights", "--targets", &targets];
        let measured = run_measured(&args);
        assert!(measured.output.status.success(), "{}", describe(&args, &measured.output));
        let stdout = String::from_utf8_lossy(&measured.output.stdout);
        assert!(stdout.contains("16777216"), "every label counted\n{stdout}");
        // One decoded copy plus the program itself; two copies would not fit.
        let budget = payload + payload / 4 + 24 * MIB;
        assert!(
            measured.peak < budget,
            "{name}: peak {} MiB for a {} MiB payload (budget {} MiB)",
            measured.peak / MIB,
            payload / MIB,
            budget / MIB
        );
    }
}

/// A raw deflate stream (one fixed-Huffman block) of `prefix` then `zeros`
/// zero bytes: the zeros cost 13 bits per 258, so a large member takes
/// little room.
fn deflate_zeros(prefix: &[u8], zeros: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        count: u32,
    }
    impl Bits {
        fn put(&mut self, value: u64, n: u32) {
            self.acc |= value << self.count;
            self.count += n;
            while self.count >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.count -= 8;
            }
        }
        /// Huffman codes go most significant bit first.
        fn code(&mut self, code: u64, n: u32) {
            let reversed = (0..n).fold(0, |r, i| r | (((code >> i) & 1) << (n - 1 - i)));
            self.put(reversed, n);
        }
        fn literal(&mut self, byte: u8) {
            match byte {
                0..=143 => self.code(0x30 + byte as u64, 8),
                _ => self.code(0x190 + (byte as u64 - 144), 9),
            }
        }
    }
    let mut bits = Bits { out: Vec::new(), acc: 0, count: 0 };
    bits.put(1, 1); // the final block
    bits.put(1, 2); // fixed Huffman codes
    for &byte in prefix {
        bits.literal(byte);
    }
    bits.literal(0);
    let mut left = zeros - 1;
    while left >= 258 {
        bits.code(0xC5, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.literal(0);
    }
    bits.code(0, 7); // end of block
    bits.put(0, 7);
    bits.out
}

/// A zip archive of one deflated member, written by hand so that its sizes
/// can be anything; the CRC is not checked before the member is read whole.
fn zip_deflated(name: &str, stream: &[u8], claimed_size: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let le16 = |v: u16| v.to_le_bytes();
    let le32 = |v: u32| v.to_le_bytes();
    out.extend(le32(0x0403_4b50));
    out.extend(le16(20));
    out.extend(le16(0));
    out.extend(le16(8));
    out.extend(le32(0)); // time, date
    out.extend(le32(0)); // crc
    out.extend(le32(stream.len() as u32));
    out.extend(le32(claimed_size));
    out.extend(le16(name.len() as u16));
    out.extend(le16(0));
    out.extend(name.as_bytes());
    out.extend(stream);
    let directory = out.len() as u32;
    out.extend(le32(0x0201_4b50));
    out.extend(le16(20));
    out.extend(le16(20));
    out.extend(le16(0));
    out.extend(le16(8));
    out.extend(le32(0));
    out.extend(le32(0));
    out.extend(le32(stream.len() as u32));
    out.extend(le32(claimed_size));
    out.extend(le16(name.len() as u16));
    out.extend([0; 8]); // extra, comment, disk, internal attributes
    out.extend(le32(0)); // external attributes
    out.extend(le32(0)); // local header offset
    out.extend(name.as_bytes());
    let directory_len = out.len() as u32 - directory;
    out.extend(le32(0x0605_4b50));
    out.extend([0; 4]);
    out.extend(le16(1));
    out.extend(le16(1));
    out.extend(le32(directory_len));
    out.extend(le32(directory));
    out.extend(le16(0));
    out
}

/// An `.npz` member whose header declares 8 bytes of payload was inflated
/// in full (4 GB from a small archive) before its size was checked. At
/// most the header and what it declares are inflated, whatever the zip
/// headers claim: sizes that say 256 MiB are refused before inflating, and
/// sizes that agree with the header stop the stream there.
#[test]
fn an_npz_member_is_inflated_no_further_than_its_header_declares() {
    let dir = Scratch::new();
    let image_header = npy("<f4", &[2], &[]);
    let zeros = 256 << 20;
    let stream = deflate_zeros(&image_header, zeros);
    assert!(stream.len() < 2 << 20, "{} bytes", stream.len());
    let honest = (image_header.len() + zeros) as u32;
    let archive = dir.file("honest.npz", &zip_deflated("targets.npy", &stream, honest));
    let args = ["weights", "--targets", &archive];
    let measured = run_measured(&args);
    let expected =
        [&format!("{archive} (targets)"), "member 'targets.npy'", "unexpected bytes after the payload"];
    let problems = violations(&measured.output, &expected);
    assert!(problems.is_empty(), "{}\n{}", problems.join("; "), describe(&args, &measured.output));
    assert!(measured.peak < 48 * MIB, "peak {} MiB", measured.peak / MIB);

    let declared = (image_header.len() + 8) as u32;
    let archive = dir.file("claims_the_header.npz", &zip_deflated("targets.npy", &stream, declared));
    let args = ["weights", "--targets", &archive, "--format", "json"];
    let measured = run_measured(&args);
    let output = &measured.output;
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"), "{}", describe(&args, output));
    if output.status.success() {
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
        assert_eq!(report["count"], 2, "the two declared elements, no more");
    } else {
        assert!(
            violations(output, &[&format!("{archive} (targets)")]).is_empty(),
            "{}",
            describe(&args, output)
        );
    }
    assert!(measured.peak < 48 * MIB, "peak {} MiB", measured.peak / MIB);
}

/// JSON integers cost about 12 times the file (200 MB took 2.5 GB): they
/// were kept as 128-bit integers, then copied. They are parsed straight into
/// one int64 buffer sized from the text.
#[test]
fn json_integers_cost_eight_bytes_each() {
    let dir = Scratch::new();
    let count = 10_000_000usize;
    let mut text = Vec::with_capacity(2 * count + 2);
    text.push(b'[');
    for i in 0..count {
        text.extend_from_slice(if i % 2 == 0 { b"0," } else { b"1," });
    }
    *text.last_mut().unwrap() = b']';
    let file_len = text.len() as u64;
    let targets = dir.file("labels.json", &text);
    drop(text);
    let args = ["weights", "--targets", &targets];
    let measured = run_measured(&args);
    assert!(measured.output.status.success(), "{}", describe(&args, &measured.output));
    let numbers = 8 * count as u64;
    let budget = file_len + numbers + numbers / 4 + 24 * MIB;
    assert!(
        measured.peak < budget,
        "peak {} MiB for a {} MiB file of {count} integers (budget {} MiB)",
        measured.peak / MIB,
        file_len / MIB,
        budget / MIB
    );
}

// --------------------------------------------------------------------------
// messages that misled
// --------------------------------------------------------------------------

/// A float target of 1e300 is integral; it was called "not an integer".
#[test]
fn a_huge_integral_float_label_is_called_too_large() {
    let dir = Scratch::new();
    let logits = dir.file("logits.npy", &npy("<f4", &[2, 3], &f32_bytes(&[0.0; 6])));
    let targets = dir.file("targets.json", b"[0, 1e300]");
    let message = rejects(
        &["ce", "--logits", &logits, "--targets", &targets],
        &[
            &format!("{targets} (targets)"),
            "label 1e300 at index [1]",
            "too large",
            "out of range for 3 classes",
        ],
    );
    assert!(!message.contains("not an integer"), "{message}");
    rejects(&["weights", "--targets", &targets], &[&format!("{targets} (targets)"), "[1]", "too large"]);
    let fraction = dir.file("fraction.json", b"[0, 1.5]");
    rejects(&["ce", "--logits", &logits, "--targets", &fraction], &["not an integer"]);
}

/// A UTF-8 byte-order mark before a JSON document gave a bare position.
/// It is skipped; a UTF-16 one is refused with how to convert the file.
#[test]
fn a_byte_order_mark_before_json_is_skipped_or_explained() {
    let dir = Scratch::new();
    let bom = b"\xEF\xBB\xBF";
    let with_bom = |name: &str, text: &[u8]| dir.file(name, &[bom.as_slice(), text].concat());
    let logits = with_bom("logits.json", b"[[2.0, 1.0, 0.25], [0.5, 2.5, -1.0]]");
    let targets = with_bom("targets.json", b"[0, 1]");
    let bundle = with_bom("bundle.json", br#"{"logits": [[2.0, 1.0]], "targets": [1]}"#);
    let names = with_bom("names.txt", b"cat\ndog\nbird\n");
    succeeds(&["ce", "--logits", &logits, "--targets", &targets, "--class-names", &names]);
    succeeds(&["ce", &bundle]);
    let report = succeeds(&["ce", "--logits", &logits, "--targets", &targets, "--format", "json"]);
    let baseline = with_bom("baseline.json", report.as_bytes());
    succeeds(&["diff", &baseline, &baseline]);

    let utf16: Vec<u8> =
        b"\xFF\xFE".iter().copied().chain("[0, 1]".encode_utf16().flat_map(u16::to_le_bytes)).collect();
    let wide = dir.file("utf16.json", &utf16);
    rejects(
        &["ce", "--logits", &logits, "--targets", &wide],
        &[&format!("{wide} (targets)"), "UTF-16 byte-order mark", "UTF-8"],
    );
}

/// `--priors ssd512` (neither a file nor a built-in set) said "no such file".
#[test]
fn an_unknown_prior_set_lists_the_built_in_ones() {
    rejects(
        &[
            "ssd",
            "--loc",
            "ssd/golden/loc.npy",
            "--conf",
            "ssd/golden/conf.npy",
            "--priors",
            "ssd512",
            "--truths",
            "ssd/golden/truths.json",
        ],
        &["ssd512 (priors)", "not a built-in prior set", "ssd300-voc, ssd300-coco"],
    );
}
