//! Counting at the server: the commands Redis executed (`INFO commandstats`), and the machine's
//! load average.

use crate::env::SERVICE_TIMEOUT;

pub async fn redis_connection(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    tokio::time::timeout(SERVICE_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("no answer from Redis within {SERVICE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())
}

/// Commands Redis has executed since its start (all clients), not counting `INFO` itself.
pub async fn redis_commands(conn: &mut redis::aio::MultiplexedConnection) -> Option<u64> {
    let info: String = tokio::time::timeout(
        SERVICE_TIMEOUT,
        redis::cmd("INFO").arg("commandstats").query_async(conn),
    )
    .await
    .ok()?
    .ok()?;
    Some(parse_commandstats(&info))
}

/// Sums `calls=` over every `cmdstat_*` line except `cmdstat_info`.
fn parse_commandstats(info: &str) -> u64 {
    info.lines()
        .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
        .filter_map(|line| {
            let calls = line.split_once("calls=")?.1;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// The 1-minute load average, from /proc/loadavg.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_calls_without_info() {
        let info = "# Commandstats\r\ncmdstat_get:calls=3,usec=5,usec_per_call=1.6\r\n\
                    cmdstat_info:calls=10,usec=1\r\ncmdstat_evalsha:calls=4,usec=9\r\n";
        assert_eq!(parse_commandstats(info), 7);
    }
}
