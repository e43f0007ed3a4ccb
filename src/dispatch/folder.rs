//! The `store` step: write the document into a tenant's folder, atomically
//! (temp file, sync, rename, sync the folder) and under a safe name.

use std::io;
use std::path::{Path, PathBuf};

use crate::store::job::Job;

/// Longest job-name part of a stored file's name.
pub const MAX_STORED_NAME_LEN: usize = 100;

/// The file name a job is stored under: `<id>-<job name made safe>`; never
/// contains a path separator, never starts with a dot.
pub fn stored_name(job: &Job) -> String {
    let mut safe: String = job
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    safe.truncate(MAX_STORED_NAME_LEN);
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        job.id.to_string()
    } else {
        format!("{}-{safe}", job.id)
    }
}

/// Copies the spool file into `folder`; returns the stored file's path.
pub async fn store(job: &Job, spool: &Path, folder: &Path) -> io::Result<PathBuf> {
    let (job, spool, folder) = (job.clone(), spool.to_owned(), folder.to_owned());
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&folder)?;
        let target = folder.join(stored_name(&job));
        let tmp = folder.join(format!(".printroute-{}-{}.tmp", job.tenant, job.id));
        std::fs::copy(&spool, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(&folder)?.sync_all()?;
        Ok(target)
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ids::{JobId, ListenerName, TenantId};
    use crate::store::job::JobState;

    fn job(name: &str) -> Job {
        Job {
            tenant: TenantId::parse("a").unwrap(),
            id: JobId(7),
            listener: ListenerName("raw".into()),
            queue: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            user: "u".into(),
            name: name.into(),
            format: None,
            size: 0,
            sha256: String::new(),
            workflow: "w".into(),
            step: 0,
            state: JobState::Pending,
            created_ms: 0,
            hold_until_ms: None,
            step_started_ms: 0,
            delivering: None,
            history: vec![],
            ipp_job_attributes: None,
        }
    }

    #[test]
    fn stored_names_stay_inside_the_folder() {
        assert_eq!(stored_name(&job("report.pdf")), "7-report.pdf");
        assert_eq!(stored_name(&job("../../etc/passwd")), "7-_.._etc_passwd");
        assert_eq!(stored_name(&job("..")), "7");
        assert_eq!(stored_name(&job("")), "7");
        assert!(stored_name(&job(&"x/".repeat(500))).len() <= MAX_STORED_NAME_LEN + 2);
    }
}
