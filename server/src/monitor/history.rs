//! Berth's own record of what each workspace used: a sample every `sample_seconds` while it
//! runs, averaged to one a minute after an hour, deleted after the retention.

use app::model::{GpuPoint, UsagePoint};
use sqlx::Row;

use crate::db::{Db, DbError};

/// Raw samples are kept this long, then averaged per minute.
pub const RAW_SECONDS: i64 = 3600;
/// The span of an averaged row.
pub const MINUTE: i64 = 60;

#[derive(Clone)]
pub struct History {
    db: Db,
    retention_seconds: i64,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compacted {
    pub averaged: u64,
    pub deleted: u64,
}

impl History {
    pub fn new(db: Db, retention_days: u64) -> History {
        History { db, retention_seconds: retention_days as i64 * 86_400 }
    }

    /// One sample (see [`History::insert_round`] for many).
    pub async fn insert(&self, username: &str, at: i64, span: i64, point: &UsagePoint) -> Result<(), DbError> {
        self.insert_round(&[(username.to_string(), at, point.clone())], span).await
    }

    /// One round of samples, (owner, at, point) each, in one transaction: one commit for the
    /// round, not one per workspace.
    pub async fn insert_round(&self, points: &[(String, i64, UsagePoint)], span: i64) -> Result<(), DbError> {
        if points.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.pool.begin().await?;
        // 50 rows of 10 values a statement: within SQLite's and PostgreSQL's bind limits.
        for chunk in points.chunks(50) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p: Vec<String> = (1..=10).map(|k| format!("${}", i * 10 + k)).collect();
                    format!("({})", p.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO usage_samples (username, at, span, cpu_cores, memory_bytes, net_rx_rate, net_tx_rate, disk_read_rate, disk_write_rate, gpus) VALUES {}",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (owner, at, point) in chunk {
                let gpus = if point.gpus.is_empty() { None } else { Some(encode_gpus(&point.gpus)) };
                query = query
                    .bind(owner.clone())
                    .bind(*at)
                    .bind(span)
                    .bind(point.cpu_cores)
                    .bind(point.memory_bytes as i64)
                    .bind(point.net_rx_rate)
                    .bind(point.net_tx_rate)
                    .bind(point.disk_read_rate)
                    .bind(point.disk_write_rate)
                    .bind(gpus);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The owner's samples from `since` on, oldest first.
    pub async fn since(&self, username: &str, since: i64) -> Result<Vec<UsagePoint>, DbError> {
        let rows = sqlx::query(
            "SELECT at, cpu_cores, memory_bytes, net_rx_rate, net_tx_rate, disk_read_rate, disk_write_rate, gpus
             FROM usage_samples WHERE username = $1 AND at >= $2 ORDER BY at",
        )
        .bind(username)
        .bind(since)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| UsagePoint {
                at: r.get::<i64, _>(0),
                cpu_cores: r.get::<f64, _>(1),
                memory_bytes: r.get::<i64, _>(2).max(0) as u64,
                net_rx_rate: r.get::<f64, _>(3),
                net_tx_rate: r.get::<f64, _>(4),
                disk_read_rate: r.get::<f64, _>(5),
                disk_write_rate: r.get::<f64, _>(6),
                gpus: r.get::<Option<String>, _>(7).map(|g| decode_gpus(&g)).unwrap_or_default(),
            })
            .collect())
    }

    /// Averages raw samples older than an hour into one row a minute (whole minutes only),
    /// and deletes what is older than the retention. One transaction: a reader sees the raw
    /// rows or their averages, never both or neither.
    pub async fn compact(&self, now: i64) -> Result<Compacted, DbError> {
        let cutoff = (now - RAW_SECONDS) / MINUTE * MINUTE;
        let mut tx = self.db.pool.begin().await?;
        let averaged = sqlx::query(
            "INSERT INTO usage_samples (username, at, span, cpu_cores, memory_bytes, net_rx_rate, net_tx_rate, disk_read_rate, disk_write_rate, gpus)
             SELECT username, (at / 60) * 60, 60, AVG(cpu_cores), CAST(AVG(memory_bytes) AS BIGINT), AVG(net_rx_rate), AVG(net_tx_rate),
                    AVG(disk_read_rate), AVG(disk_write_rate), MAX(gpus)
             FROM usage_samples WHERE span < 60 AND at < $1 GROUP BY username, (at / 60) * 60",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM usage_samples WHERE span < 60 AND at < $1").bind(cutoff).execute(&mut *tx).await?;
        let deleted = sqlx::query("DELETE FROM usage_samples WHERE at < $1")
            .bind(now - self.retention_seconds)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Compacted { averaged, deleted })
    }
}

/// At most `buckets` points for a chart of `from..until`: the points of each equal slice of
/// time averaged into one (GPU figures: the slice's last). A week of minute samples becomes a
/// few hundred points, as many as a chart can draw.
pub fn thin(points: Vec<UsagePoint>, from: i64, until: i64, buckets: usize) -> Vec<UsagePoint> {
    if points.len() <= buckets || buckets == 0 {
        return points;
    }
    let width = ((until - from).max(1) as f64 / buckets as f64).max(1.0);
    let mut out: Vec<UsagePoint> = Vec::new();
    let mut slice: Vec<UsagePoint> = Vec::new();
    let mut current = None;
    let flush = |slice: &mut Vec<UsagePoint>, out: &mut Vec<UsagePoint>| {
        if slice.is_empty() {
            return;
        }
        let n = slice.len() as f64;
        let avg = |f: fn(&UsagePoint) -> f64| slice.iter().map(f).sum::<f64>() / n;
        let last = slice.last().expect("not empty");
        out.push(UsagePoint {
            at: last.at,
            cpu_cores: avg(|p| p.cpu_cores),
            memory_bytes: avg(|p| p.memory_bytes as f64).round() as u64,
            net_rx_rate: avg(|p| p.net_rx_rate),
            net_tx_rate: avg(|p| p.net_tx_rate),
            disk_read_rate: avg(|p| p.disk_read_rate),
            disk_write_rate: avg(|p| p.disk_write_rate),
            gpus: last.gpus.clone(),
        });
        slice.clear();
    };
    for p in points {
        let bucket = ((p.at - from).max(0) as f64 / width) as i64;
        if current.is_some_and(|c| c != bucket) {
            flush(&mut slice, &mut out);
        }
        current = Some(bucket);
        slice.push(p);
    }
    flush(&mut slice, &mut out);
    out
}

/// GPU points as a compact JSON array: `[[index, util, memory, temperature or -1], …]`.
fn encode_gpus(gpus: &[GpuPoint]) -> String {
    let rows: Vec<[i64; 4]> = gpus
        .iter()
        .map(|g| [g.index as i64, g.utilization_percent as i64, g.memory_bytes as i64, g.temperature_celsius.map_or(-1, i64::from)])
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
}

fn decode_gpus(text: &str) -> Vec<GpuPoint> {
    let rows: Vec<[i64; 4]> = serde_json::from_str(text).unwrap_or_default();
    rows.iter()
        .map(|r| GpuPoint {
            index: r[0].max(0) as u32,
            utilization_percent: r[1].max(0) as u32,
            memory_bytes: r[2].max(0) as u64,
            temperature_celsius: u32::try_from(r[3]).ok(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_history_is_thinned_to_what_a_chart_draws() {
        let point = |at: i64, cpu: f64| UsagePoint { at, cpu_cores: cpu, memory_bytes: at as u64, ..Default::default() };
        // Ten points over 100 s into 5 slices of 20 s: pairs averaged, each at its slice's last.
        let points: Vec<UsagePoint> = (0..10).map(|i| point(i * 10, i as f64)).collect();
        let thinned = thin(points.clone(), 0, 100, 5);
        let summary: Vec<(i64, f64, u64)> = thinned.iter().map(|p| (p.at, p.cpu_cores, p.memory_bytes)).collect();
        assert_eq!(summary, [(10, 0.5, 5), (30, 2.5, 25), (50, 4.5, 45), (70, 6.5, 65), (90, 8.5, 85)]);
        assert_eq!(thin(points.clone(), 0, 100, 10), points, "few enough already: unchanged");
    }

    #[test]
    fn gpu_points_survive_their_storage_form() {
        let gpus = vec![
            GpuPoint { index: 0, utilization_percent: 87, memory_bytes: 12 << 30, temperature_celsius: Some(71) },
            GpuPoint { index: 3, utilization_percent: 0, memory_bytes: 0, temperature_celsius: None },
        ];
        let stored = encode_gpus(&gpus);
        assert_eq!(stored, "[[0,87,12884901888,71],[3,0,0,-1]]");
        assert_eq!(decode_gpus(&stored), gpus);
    }
}
