//! Time on the wire: RFC 3339 timestamps and milliseconds since the Unix epoch.

/// The wall clock, in ms since the Unix epoch (0 before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch.
pub fn event_time_ms(timestamp: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`timestamp` `{timestamp}` is not an RFC 3339 time ({e})"))
}

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC timestamp.
pub fn format_time_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
