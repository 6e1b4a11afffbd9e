use super::*;
use crate::sinks::metrics::tests::alert_failure;

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tlsmon-ef-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("events.jsonl")
}

#[test]
fn a_torn_last_line_is_not_continued() {
    let path = temp_path("torn");
    std::fs::write(&path, "{\"whole\":1}\n{\"cut\":").unwrap();
    let mut events = EventsFile::open(&path).unwrap();
    events.write(&alert_failure()).unwrap();
    events.write(&alert_failure()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let json = json_line(&alert_failure());
    assert_eq!(lines, ["{\"whole\":1}", "{\"cut\":", &json, &json]);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_failed_write_says_the_record_is_lost() {
    // /dev/full takes no byte: ENOSPC at once, nothing to cut.
    let mut events = EventsFile {
        path: "/dev/full".into(),
        file: OpenOptions::new().append(true).open("/dev/full").unwrap(),
        torn: false,
    };
    let err = events.write(&alert_failure()).unwrap_err();
    assert_eq!(
        format!("{:#}", anyhow::Error::from(err)),
        "cannot write to events file /dev/full: No space left on device (os error 28); the record is lost"
    );
}

#[test]
fn partial_lines_are_described() {
    assert_eq!(
        Partial::Removed.to_string(),
        " (its partial line was removed)"
    );
    assert_eq!(
        Partial::Left(io::Error::from_raw_os_error(libc::EIO)).to_string(),
        " (its partial line could not be removed: Input/output error (os error 5); \
         the next record starts on a new line)"
    );
}
