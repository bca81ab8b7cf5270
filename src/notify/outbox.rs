//! The `outbox` channel: writes each message, with its attachment list, as one JSON file
//! into a folder, atomically. It lets the whole pipeline run with no external service and
//! is what tests and the demo read back.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;

use super::{Message, NotifyError, WholeMessage};
use crate::format::{partial_path, sync_dir};

pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }

    fn write(&self, message: &Message) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        // A channel's second notify entry in a task writes `_2`, so nothing is replaced.
        let entry = if message.occurrence > 1 {
            format!("_{}", message.occurrence)
        } else {
            String::new()
        };
        let name = format!(
            "{}_{}_{}{entry}.json",
            message.task, message.run_id, message.channel
        );
        let partial = partial_path(&self.dir, &name);
        let target = self.dir.join(&name);
        let json = serde_json::to_vec_pretty(message).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&partial, &target)?;
        sync_dir(&self.dir)?;
        Ok(target)
    }
}

#[async_trait]
impl WholeMessage for Outbox {
    async fn post(&self, message: &Message) -> Result<String, NotifyError> {
        let msg = message.clone();
        let dir = self.dir.clone();
        let out = tokio::task::spawn_blocking(move || Outbox { dir }.write(&msg))
            .await
            .map_err(|e| {
                NotifyError::retryable(format!(
                    "channel `{}`: outbox writer stopped: {e}",
                    message.channel
                ))
            })?;
        match out {
            Ok(path) => Ok(format!("written to {}", path.display())),
            // Named like every channel's errors, so the run's warnings say which one.
            Err(e) => Err(NotifyError::Permanent(format!(
                "channel `{}`: cannot write to outbox {}: {e}",
                message.channel,
                self.dir.display()
            ))),
        }
    }
}
