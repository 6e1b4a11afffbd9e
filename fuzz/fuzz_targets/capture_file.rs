//! Any bytes as a capture file: the reader must return segments or an error, never panic.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tlsmon::source::pcap::{CaptureFileError, CaptureFileReader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureFileReader::from_reader("fuzz.pcap", Cursor::new(data.to_vec()))
    else {
        return;
    };
    let mut segments = 0u64;
    loop {
        match reader.next_segment() {
            Ok(Some(segment)) => {
                segments += 1;
                assert_eq!(segment.device.name(), "fuzz.pcap");
            }
            Ok(None) => break,
            Err(CaptureFileError::Corrupt { offset, .. }) => {
                // An error names a place inside the file.
                assert!(offset <= data.len() as u64);
                break;
            }
            Err(_) => break,
        }
    }
    // After the end or an error the reader stays finished.
    assert!(matches!(reader.next_segment(), Ok(None)));
    let stats = reader.stats();
    assert_eq!(stats.tcp_segments, segments);
    assert!(stats.tcp_segments + stats.non_tcp + stats.headers_cut <= stats.packets);
});
