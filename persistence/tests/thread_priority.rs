//! The SQLite writer threads' priorities, in a test process of its own: no other journal's
//! threads may be running while it reads them from `/proc`.

use tradefloor_persistence::{Database, Journal, JournalConfig};

/// The nice values of this process's threads named `name` (Linux `/proc`).
#[cfg(target_os = "linux")]
fn thread_nices(name: &str) -> Vec<i64> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap();
        // After the command's closing parenthesis: state is field 3, nice field 19.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        nices.push(after.split(' ').nth(16).unwrap().parse().unwrap());
    }
    nices
}

/// The read models' writer runs at a lower priority than the journal's (whose commits every
/// order waits for); raising the journal's needs `CAP_SYS_NICE`, lowering is always allowed.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn sqlite_writer_threads_run_at_their_priorities() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("journal.db").display());
    let config = JournalConfig {
        journal_writer_nice: -3,
        read_models_writer_nice: 7,
        ..JournalConfig::default()
    };
    let journal = Journal::open(Database::connect(&url, &config).await.unwrap(), config)
        .await
        .unwrap();
    // Raising a priority takes CAP_SYS_NICE, which root has (CI runs as root); without it the
    // journal's writer keeps the default.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    let expected = (if root { [-3] } else { [0] }, [7]);
    // The threads set their own priority as they start, after the journal opened.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let seen = || {
        (
            thread_nices("journal-sqlite"),
            thread_nices("read-models-sql"),
        )
    };
    while seen() != (expected.0.to_vec(), expected.1.to_vec())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen(),
        (expected.0.to_vec(), expected.1.to_vec()),
        "root: {root}"
    );
    journal.database().close().await;
}
