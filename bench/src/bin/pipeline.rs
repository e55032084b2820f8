//! The client's encode pipeline (chunk, hash, compress: `ObjectEncoder::encode_file`) against
//! its two costliest parts alone on the same files: BLAKE3 and zstd at level 3. Single thread.
//!
//! `cargo run --release -p cairn-bench --bin pipeline [-- <MiB> <runs>]` (default 256 MiB, 7
//! runs). The methods take turns within each run, so load from other processes on the machine
//! hits all three alike; each figure is the median over the runs, both of wall time and of the
//! thread's CPU time (steadier when other processes share the cores). The target is a pipeline at
//! least 0.8 times as fast as zstd-3 alone: chunking and hashing must stay cheap next to
//! compression.

use std::hint::black_box;

use std::time::Duration;

use cairn_bench::{Timing, median, megabytes_per_second, mixed_project, timed};
use sync_protocol::chunk_id;
use sync_protocol::chunking::{ObjectEncoder, chunk_boundaries};

fn main() {
    let mut args = std::env::args().skip(1);
    let mebibytes: usize = args.next().map_or(256, |a| a.parse().expect("size in MiB"));
    let runs: usize = args
        .next()
        .map_or(7, |a| a.parse().expect("number of runs"));
    assert!(runs >= 1);

    let project = mixed_project(mebibytes << 20, 0x00c0_ffee);
    let random: usize = project
        .iter()
        .filter(|f| f.random)
        .map(|f| f.bytes.len())
        .sum();
    let files: Vec<Vec<u8>> = project.into_iter().map(|f| f.bytes).collect();
    let input: usize = files.iter().map(Vec::len).sum();
    println!(
        "{} files, {:.1} MiB: JSON-like text and {:.0}% random bytes; {runs} runs, single thread",
        files.len(),
        input as f64 / f64::from(1 << 20),
        100.0 * random as f64 / input as f64,
    );

    let largest = files.iter().map(Vec::len).max().unwrap_or(0);
    let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd context");
    let mut zstd_out = Vec::with_capacity(zstd::zstd_safe::compress_bound(largest));
    let mut encoder = ObjectEncoder::new();

    let mut chunk_times = Vec::new();
    let mut chunk_hash_times = Vec::new();
    let mut hash_times = Vec::new();
    let mut zstd_times = Vec::new();
    let mut pipeline_times = Vec::new();
    let mut zstd_bytes = 0;
    let mut pipeline_bytes = 0;
    let mut pipeline_objects = 0;
    for _ in 0..runs {
        // The pipeline's parts, to see where its time goes.
        let (time, ()) = timed(|| {
            for file in &files {
                for range in chunk_boundaries(black_box(file)) {
                    black_box(range);
                }
            }
        });
        chunk_times.push(time);
        let (time, ()) = timed(|| {
            for file in &files {
                for range in chunk_boundaries(black_box(file)) {
                    black_box(chunk_id(&file[range]));
                }
            }
        });
        chunk_hash_times.push(time);

        let (time, ()) = timed(|| {
            for file in &files {
                black_box(blake3::hash(black_box(file)));
            }
        });
        hash_times.push(time);

        let (time, bytes) = timed(|| {
            let mut total = 0;
            for file in &files {
                zstd_out.clear();
                total += compressor
                    .compress_to_buffer(black_box(file), &mut zstd_out)
                    .expect("zstd compression");
            }
            total
        });
        zstd_times.push(time);
        zstd_bytes = bytes;

        let (time, (bytes, objects)) = timed(|| {
            let mut total = 0;
            let mut objects = 0;
            for file in &files {
                let encoded = encoder
                    .encode_file(black_box(file), false)
                    .expect("file fits");
                objects += encoded.objects.len();
                total += encoded.objects.iter().map(|o| o.frame.len()).sum::<usize>();
            }
            (total, objects)
        });
        pipeline_times.push(time);
        pipeline_bytes = bytes;
        pipeline_objects = objects;
    }

    let cpu_reported = hash_times.iter().all(|t: &Timing| t.cpu.is_some());
    let row = |name: &str, times: &[Timing], output: Option<usize>| {
        let mut wall: Vec<_> = times.iter().map(|t| t.wall).collect();
        let mut cpu: Vec<_> = times.iter().filter_map(|t| t.cpu).collect();
        let wall = median(&mut wall);
        let cpu = (cpu_reported).then(|| median(&mut cpu));
        let ratio = output.map_or(String::from("-"), |out| {
            format!("{:.2}", input as f64 / out as f64)
        });
        let cpu_rate = cpu.map_or(String::from("-"), |cpu| {
            format!("{:.0}", megabytes_per_second(input, cpu))
        });
        println!(
            "{name:<34} {cpu_rate:>10} {:>10.0} {ratio:>12}",
            megabytes_per_second(input, wall),
        );
        (cpu, wall)
    };
    println!(
        "{:<34} {:>10} {:>10} {:>12}",
        "method", "CPU time", "wall time", "compression"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>12}",
        "(median of runs)", "MB/s", "MB/s", "ratio"
    );
    row("FastCDC boundaries alone", &chunk_times, None);
    row("FastCDC + BLAKE3 chunk ids", &chunk_hash_times, None);
    row("BLAKE3 alone (whole files)", &hash_times, None);
    let zstd = row(
        "zstd level 3 alone (whole files)",
        &zstd_times,
        Some(zstd_bytes),
    );
    let pipeline = row(
        "pipeline: chunk + hash + zstd-3",
        &pipeline_times,
        Some(pipeline_bytes),
    );
    let ratio = |zstd: Duration, pipeline: Duration| zstd.as_secs_f64() / pipeline.as_secs_f64();
    if let (Some(zstd_cpu), Some(pipeline_cpu)) = (zstd.0, pipeline.0) {
        println!(
            "pipeline / zstd-3 throughput, CPU time: {:.2} (target >= 0.80)",
            ratio(zstd_cpu, pipeline_cpu)
        );
        // The two run back to back in each round, so their ratio within a round is the
        // figure least disturbed by other load on the machine.
        let mut per_round: Vec<f64> = zstd_times
            .iter()
            .zip(&pipeline_times)
            .filter_map(|(z, p)| Some(ratio(z.cpu?, p.cpu?)))
            .collect();
        per_round.sort_by(f64::total_cmp);
        println!(
            "  per round: median {:.2}, range {:.2} to {:.2}",
            per_round[per_round.len() / 2],
            per_round[0],
            per_round[per_round.len() - 1]
        );
    }
    println!(
        "pipeline / zstd-3 throughput, wall time: {:.2}; {pipeline_objects} objects",
        ratio(zstd.1, pipeline.1)
    );
}
