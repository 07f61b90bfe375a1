//! Effect logs without Kafka: an append-only file (local mode; each record appended and
//! fsync'ed before the call goes on), and memory (a run that keeps nothing between runs:
//! `kafclaw test`, a local run without a state folder).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{EffectLog, EffectRecord, LogFuture};

/// The effect log of local mode: one JSON [`EffectRecord`] a line, appended and fsync'ed
/// (the file, and its folder when the file is new) before [`EffectLog::append`] resolves.
/// Read whole when opened, so a run sees every record of the runs before it; a last line cut
/// by a crash while it was written is removed (that record was never acknowledged).
///
/// One run at a time: the file is locked exclusively (an OS advisory lock, `flock` on Unix)
/// from [`FileEffectLog::open`] until the log is dropped, and a second run opening it fails
/// at start. Two runs over one log would each look a step up, find nothing and both make
/// the call.
#[derive(Debug)]
pub struct FileEffectLog {
    path: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    file: std::fs::File,
    records: HashMap<String, EffectRecord>,
    /// The file ended without a newline (a cut line): the next record starts a new line.
    cut: bool,
}

impl FileEffectLog {
    /// Opens (creating it and its folder when missing) the log at `path`.
    ///
    /// Errors: the file cannot be made, read, written or locked; another run (process or
    /// log) holds it; a line other than the last is not a record (named by its line number).
    pub fn open(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("effect log {shown}: creating its folder: {e}"))?;
        }
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("effect log {shown}: {e}"))?;
        lock(&file).map_err(|e| format!("effect log {shown}: {e}"))?;
        if !existed && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The new file's name is durable too.
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("effect log {shown}: {e}"))?;
        }
        let bytes = std::fs::read(path).map_err(|e| format!("effect log {shown}: {e}"))?;
        let mut records = HashMap::new();
        let (mut at, mut cut) = (0, false);
        for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
            let start = at;
            at += line.len();
            let whole = line.ends_with(b"\n");
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<EffectRecord>(text) {
                Ok(r) => {
                    records.insert(r.key.clone(), r);
                    // A last record without its newline: the next one starts a new line.
                    cut = !whole;
                }
                // A crash while the last line was written: it was never acknowledged, and is
                // cut off so the next record follows the last whole one.
                Err(_) if !whole => {
                    tracing::warn!(path = %shown, line = i + 1, "effect log: removing a last line cut by a crash");
                    file.set_len(start as u64)
                        .and_then(|()| file.sync_data())
                        .map_err(|e| format!("effect log {shown}: {e}"))?;
                }
                Err(e) => {
                    return Err(format!("effect log {shown}: line {} is not an effect record: {e}", i + 1));
                }
            }
        }
        Ok(Self { path: path.to_owned(), inner: Arc::new(Mutex::new(Inner { file, records, cut })) })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the exclusive lock of the log's file without waiting (released when it closes).
#[cfg(target_os = "linux")]
fn lock(file: &std::fs::File) -> Result<(), String> {
    // `File::try_lock` is newer than the MSRV (1.88): rustix's flock, the call it makes.
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| if e == rustix::io::Errno::WOULDBLOCK { HELD.to_owned() } else { format!("locking it: {e}") })
}

/// Takes the exclusive lock of the log's file without waiting (released when it closes).
#[cfg(not(target_os = "linux"))]
#[allow(clippy::incompatible_msrv)]
fn lock(file: &std::fs::File) -> Result<(), String> {
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => HELD.to_owned(),
        std::fs::TryLockError::Error(e) => format!("locking it: {e}"),
    })
}

/// Why a log cannot be opened while another holds it.
const HELD: &str = "another run holds it (a run over the same state dir is going on); \
                    at-most-once calls could be made twice, so this run does not start";

impl Inner {
    fn append(&mut self, record: EffectRecord, path: &Path) -> Result<(), String> {
        let mut line = if self.cut { b"\n".to_vec() } else { Vec::new() };
        serde_json::to_writer(&mut line, &record).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let shown = path.display();
        self.file.write_all(&line).map_err(|e| format!("effect log {shown}: writing: {e}"))?;
        self.file.sync_data().map_err(|e| format!("effect log {shown}: fsync: {e}"))?;
        self.cut = false;
        self.records.insert(record.key.clone(), record);
        Ok(())
    }
}

/// Runs blocking file work off the async thread when there is a runtime to run it on.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.spawn_blocking(f).await.map_err(|e| format!("effect log: {e}"))?,
        Err(_) => f(),
    }
}

impl EffectLog for FileEffectLog {
    fn lookup(&self, key: &str) -> LogFuture<Option<EffectRecord>> {
        // Every record is read when the log opens and kept as it is appended.
        let found = self.inner.lock().unwrap_or_else(|e| e.into_inner()).records.get(key).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn append(&self, record: EffectRecord) -> LogFuture<()> {
        let (inner, path) = (self.inner.clone(), self.path.clone());
        Box::pin(blocking(move || inner.lock().unwrap_or_else(|e| e.into_inner()).append(record, &path)))
    }
}

/// An effect log in memory: the semantics within one process, nothing across runs.
#[derive(Debug, Default)]
pub struct MemoryEffectLog(Mutex<HashMap<String, EffectRecord>>);

impl EffectLog for MemoryEffectLog {
    fn lookup(&self, key: &str) -> LogFuture<Option<EffectRecord>> {
        let found = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn append(&self, record: EffectRecord) -> LogFuture<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(record.key.clone(), record);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Outcome;
    use super::*;

    fn intent(key: &str) -> EffectRecord {
        EffectRecord {
            key: key.into(),
            tool: "pay".into(),
            arguments: serde_json::json!({"amount": 3}),
            input: "app/llm/in/0/1".into(),
            at_ms: 1,
            outcome: None,
        }
    }

    #[tokio::test]
    async fn records_survive_a_reopen_and_a_cut_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/effects.jsonl");
        let log = FileEffectLog::open(&path).unwrap();
        log.append(intent("k1")).await.unwrap();
        log.append(intent("k2")).await.unwrap();
        let done = EffectRecord { outcome: Some(Outcome { ok: true, text: "paid".into(), at_ms: 2 }), ..intent("k1") };
        log.append(done.clone()).await.unwrap();
        drop(log);
        // A crash in the middle of a write.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"key\":\"k3\",\"to").unwrap();
        drop(f);
        let log = FileEffectLog::open(&path).unwrap();
        assert_eq!(log.lookup("k1").await.unwrap(), Some(done));
        assert_eq!(log.lookup("k2").await.unwrap(), Some(intent("k2")));
        assert_eq!(log.lookup("k3").await.unwrap(), None);
        log.append(intent("k4")).await.unwrap();
        drop(log);
        let log = FileEffectLog::open(&path).unwrap();
        assert_eq!(log.lookup("k4").await.unwrap(), Some(intent("k4")), "written on a line of its own");
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("effects.jsonl");
        let first = FileEffectLog::open(&path).unwrap();
        let e = FileEffectLog::open(&path).unwrap_err();
        assert!(e.contains("another run holds it") && e.contains("effects.jsonl"), "{e}");
        drop(first);
        FileEffectLog::open(&path).unwrap();
    }

    #[test]
    fn a_bad_line_in_the_middle_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("effects.jsonl");
        let good = serde_json::to_string(&intent("k1")).unwrap();
        std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let e = FileEffectLog::open(&path).unwrap_err();
        assert!(e.contains("line 2 is not an effect record"), "{e}");
    }
}
