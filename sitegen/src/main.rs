//! The `sitegen` command line: build, check, serve and deploy.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sitegen::BuildOptions;
use sitegen::deploy::{CloudFrontOptions, DeployOptions};

/// A build allocates and frees millions of small strings from several threads at once
/// (template contexts, highlighted spans); with glibc's allocator that was about a sixth of a
/// cold build's CPU time (perf, 10,000 pages). mimalloc is faster at both.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "sitegen", version, about = "Cairn's static site generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct SourceArgs {
    /// The source folder (site.toml, content/, templates/, static/).
    #[arg(long, default_value = "docs-src")]
    source: PathBuf,
    /// Include pages marked draft.
    #[arg(long)]
    drafts: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the site (incrementally when the output folder has a previous build).
    Build {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long, default_value = "dist")]
        out: PathBuf,
        /// Print every page that was rendered.
        #[arg(long)]
        verbose: bool,
    },
    /// Render and check everything, write nothing.
    Check {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Build, watch the sources and serve the output with live reload on 127.0.0.1.
    Serve {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long, default_value = "dist")]
        out: PathBuf,
        #[arg(long, default_value_t = 1111)]
        port: u16,
    },
    /// Upload the changed files of a built site to S3, then invalidate the changed paths in
    /// CloudFront (or print them, without a distribution).
    Deploy {
        #[arg(long, default_value = "dist")]
        out: PathBuf,
        #[arg(long, env = "SITEGEN_BUCKET")]
        bucket: String,
        /// Key prefix inside the bucket.
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
        region: String,
        /// An S3-compatible endpoint, e.g. http://127.0.0.1:9000 (path-style addressing).
        #[arg(long, env = "SITEGEN_S3_ENDPOINT")]
        endpoint: Option<String>,
        /// Show what would be uploaded, upload nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete objects that the built site no longer has.
        #[arg(long)]
        delete: bool,
        /// Invalidate the changed paths in this CloudFront distribution after uploading
        /// (default: `[deploy] cloudfront_distribution` of the source's site.toml).
        #[arg(long, env = "SITEGEN_CLOUDFRONT_DISTRIBUTION")]
        cloudfront_distribution: Option<String>,
        /// A CloudFront-compatible endpoint (an emulator); the AWS one by default.
        #[arg(long, env = "SITEGEN_CLOUDFRONT_ENDPOINT")]
        cloudfront_endpoint: Option<String>,
        /// Create the invalidation and return, without waiting for it to complete.
        #[arg(long)]
        no_wait: bool,
        /// The source folder whose site.toml may name the distribution (`[deploy]`).
        #[arg(long, default_value = "docs-src")]
        source: PathBuf,
    },
}

fn print_report(report: &sitegen::BuildReport, verbose: bool) {
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if verbose {
        for page in &report.rendered {
            eprintln!("rendered {page}");
        }
    }
    eprintln!(
        "{} pages, {} rendered, {} files written, {} removed, {} build, {} ms",
        report.pages,
        report.rendered.len(),
        report.written,
        report.removed,
        if report.full { "full" } else { "incremental" },
        report.millis
    );
}

/// The distribution named in `<source>/site.toml`, if the file exists and names one.
fn configured_distribution(source: &std::path::Path) -> anyhow::Result<Option<String>> {
    let path = source.join("site.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let config = sitegen::config::SiteConfig::parse(&path, &text)?;
    Ok(config.deploy.cloudfront_distribution)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Build {
            source,
            out,
            verbose,
        } => {
            let options = BuildOptions {
                source: source.source,
                out,
                drafts: source.drafts,
                write: true,
            };
            let report = sitegen::build(&options)
                .with_context(|| format!("building {}", options.source.display()))?;
            print_report(&report, verbose);
        }
        Command::Check { source } => {
            let options = BuildOptions {
                source: source.source,
                out: PathBuf::new(),
                drafts: source.drafts,
                write: false,
            };
            let report = sitegen::build(&options)
                .with_context(|| format!("checking {}", options.source.display()))?;
            print_report(&report, false);
        }
        Command::Serve { source, out, port } => {
            let options = BuildOptions {
                source: source.source,
                out,
                drafts: source.drafts,
                write: true,
            };
            sitegen::serve::serve(options, port)?;
        }
        Command::Deploy {
            out,
            bucket,
            mut prefix,
            region,
            endpoint,
            dry_run,
            delete,
            cloudfront_distribution,
            cloudfront_endpoint,
            no_wait,
            source,
        } => {
            if !out.join(sitegen::manifest::MANIFEST_FILE).is_file() {
                bail!(
                    "{} has no complete build (run `sitegen build --out {}` first)",
                    out.display(),
                    out.display()
                );
            }
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            let distribution = match cloudfront_distribution {
                Some(id) => Some(id),
                None => configured_distribution(&source)?,
            };
            let options = DeployOptions {
                out,
                bucket,
                prefix,
                region,
                endpoint,
                dry_run,
                delete,
                cloudfront: distribution.map(|distribution| CloudFrontOptions {
                    distribution,
                    endpoint: cloudfront_endpoint,
                    wait: !no_wait,
                }),
            };
            let outcome = sitegen::deploy::run(&options).context("deploying")?;
            let plan = &outcome.plan;
            for file in &plan.uploads {
                println!(
                    "{} {} ({}, {})",
                    if dry_run { "would upload" } else { "uploaded" },
                    file.key,
                    file.content_type,
                    file.cache_control
                );
            }
            for key in &plan.stale {
                println!(
                    "{} {key}",
                    if delete && !dry_run {
                        "deleted"
                    } else {
                        "stale (use --delete)"
                    }
                );
            }
            eprintln!(
                "{} uploaded, {} unchanged, {} stale",
                plan.uploads.len(),
                plan.unchanged,
                plan.stale.len()
            );
            println!(
                "CloudFront invalidation paths ({}):",
                plan.invalidations.len()
            );
            for path in &plan.invalidations {
                println!("{path}");
            }
            if let Some(created) = &outcome.invalidation {
                println!(
                    "CloudFront invalidation {} created ({} paths sent, {})",
                    created.id,
                    created.paths.len(),
                    created.status
                );
            }
        }
    }
    Ok(())
}
