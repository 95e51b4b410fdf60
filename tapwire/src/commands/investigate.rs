//! `tapwire investigate`: recorded traffic, offline: list the streams a KFL
//! query and a time range select, and write their packets as one PCAP.

use anyhow::Context;
use tapwire_pcap_recorder::investigate::{
    self, Criteria, Format, Location, index_pcap_file, parse_time,
};
use tapwire_pcap_recorder::store::{LocalStore, S3Store, Store};

use crate::cli::{InvestigateArgs, InvestigateFormat};
use crate::config::Config;

/// Runs one investigation.
pub async fn run(
    config: &Config,
    args: &InvestigateArgs,
    shutdown: tapwire_plumbing::shutdown::CancellationToken,
) -> anyhow::Result<()> {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let filter = match &args.kfl {
        Some(q) => Some(
            tapwire_pcap_recorder::entry::compile(q)
                .map_err(|e| anyhow::anyhow!("--kfl is not valid KFL:\n{}", e.render(q)))?,
        ),
        None => None,
    };
    let criteria = Criteria {
        filter,
        since_ns: args
            .since
            .as_deref()
            .map(|t| parse_time(t, now_ns))
            .transpose()?,
        until_ns: args
            .until
            .as_deref()
            .map(|t| parse_time(t, now_ns))
            .transpose()?,
    };
    let show_progress = !args.no_progress;
    let mut _scratch = None;
    let (store, prefix) = match Location::parse(&args.location)? {
        Location::S3 { bucket, prefix } => {
            // [record] with its seed variables and the S3 flags applied at
            // load; the bucket is the location's.
            let mut rc = config.record.clone();
            rc.bucket = Some(bucket);
            rc.directory = None;
            let settings = rc.s3_settings().context("no bucket")?;
            (Store::S3(S3Store::connect(&settings).await), prefix)
        }
        Location::Dir(dir) => (Store::Local(LocalStore::new(dir)), String::new()),
        Location::File(path) => {
            let dir = tempfile::tempdir().context("a scratch directory")?;
            let packets = index_pcap_file(&path, dir.path())?;
            eprintln!("{}: {packets} packets read", path.display());
            let store = Store::Local(LocalStore::new(dir.path()));
            _scratch = Some(dir);
            (store, String::new())
        }
    };
    if let Some(addr) = &args.serve {
        return super::recordings::serve(addr, store, prefix, shutdown).await;
    }
    let findings = investigate::search(&store, &prefix, &criteria, show_progress).await?;
    for (key, reason) in &findings.skipped {
        eprintln!("warning: skipped {key}: {reason}");
    }
    let format = match args.format {
        InvestigateFormat::Table => Format::Table,
        InvestigateFormat::Json => Format::Json,
    };
    if args.streams {
        print!("{}", investigate::render(&findings.matches, format));
    } else {
        let rows = investigate::exchanges(&findings.matches, criteria.filter.as_ref());
        print!("{}", investigate::render_exchanges(&rows, format));
    }
    eprintln!(
        "{} matching streams in {} slices ({} indexes, {} streams read from {})",
        findings.matches.len(),
        investigate::slices_touched(&findings.matches),
        findings.indexes,
        findings.streams,
        store.describe()
    );
    if let Some(out) = &args.write {
        let packets =
            investigate::write_pcap(&store, &findings.matches, out, show_progress).await?;
        eprintln!("wrote {packets} packets to {}", out.display());
    }
    Ok(())
}
