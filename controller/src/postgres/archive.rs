//! WAL archiving's health as the primary reports it (`pg_stat_archiver`):
//! failing when the last failure is newer than the last success. A
//! failure older than the last success has been retried and gone through
//! (the archiver retries a segment until it is archived, in order).

/// What `pg_stat_archiver` says, times as Unix seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Archiver {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_at: Option<f64>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_at: Option<f64>,
}

impl Archiver {
    pub fn failing(&self) -> bool {
        match (self.last_failed_at, self.last_archived_at) {
            (Some(failed), Some(archived)) => failed > archived,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// For the condition's message: the segment that fails, or the last
    /// one archived.
    pub fn describe(&self) -> String {
        if self.failing() {
            format!(
                "archive_command fails for {} ({} failures so far); WAL stays in pg_wal until it succeeds",
                self.last_failed_wal.as_deref().unwrap_or("a segment"),
                self.failed_count
            )
        } else {
            match &self.last_archived_wal {
                Some(wal) => format!("{} segments archived, the last {wal}", self.archived_count),
                None => "no segment to archive yet".to_string(),
            }
        }
    }
}

pub async fn read(client: &tokio_postgres::Client) -> Result<Archiver, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT archived_count, last_archived_wal, \
                    extract(epoch FROM last_archived_time)::float8, \
                    failed_count, last_failed_wal, \
                    extract(epoch FROM last_failed_time)::float8 \
             FROM pg_stat_archiver",
            &[],
        )
        .await?;
    Ok(Archiver {
        archived_count: row.get(0),
        last_archived_wal: row.get(1),
        last_archived_at: row.get(2),
        failed_count: row.get(3),
        last_failed_wal: row.get(4),
        last_failed_at: row.get(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_only_while_the_last_failure_is_newer() {
        let mut a = Archiver::default();
        assert!(!a.failing(), "nothing to archive yet");
        a.last_failed_at = Some(10.0);
        assert!(a.failing(), "failed, never archived");
        a.last_archived_at = Some(12.0);
        a.last_archived_wal = Some("000000010000000000000003".into());
        a.archived_count = 3;
        assert!(!a.failing(), "retried and archived since");
        a.last_failed_at = Some(15.0);
        a.last_failed_wal = Some("000000010000000000000004".into());
        assert!(a.failing());
        assert!(
            a.describe().contains("000000010000000000000004"),
            "{}",
            a.describe()
        );
    }
}
