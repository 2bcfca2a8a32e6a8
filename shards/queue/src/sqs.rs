//! The queue on Amazon SQS (or a compatible endpoint): `SendMessageBatch`, `ReceiveMessage` (long poll) with
//! the lease as visibility timeout, `ChangeMessageVisibilityBatch` to renew (full lease) or release (0), and
//! `DeleteMessageBatch` once done. A queue given by name is looked up, and created when missing.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use bytes::Bytes;
use tokio::sync::Mutex;

use crate::{Backend, Leased, QueueConfig, QueueError};

/// SQS's limit on one message, and on one batch request in all.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// SQS's limit on entries per batch request.
const MAX_BATCH: usize = 10;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct SqsQueue {
    client: Client,
    queue_name: String,
    /// The queue URL, once known.
    url: Mutex<Option<String>>,
    lease_secs: i32,
    wait: Duration,
    max_messages: i32,
}

fn err<E: std::error::Error>(what: &str, e: E) -> QueueError {
    QueueError::Backend(format!("{what}: {}", DisplayErrorContext(e)))
}

impl SqsQueue {
    pub(crate) async fn new(config: QueueConfig) -> Result<SqsQueue, QueueError> {
        let Backend::Sqs(sqs) = config.backend else {
            return Err(QueueError::Config("not an SQS backend".into()));
        };
        if sqs.queue_url.is_empty() && sqs.queue_name.is_empty() {
            return Err(QueueError::Config(
                "queue.sqs: set queue_url or queue_name".into(),
            ));
        }
        let lease_secs = config.lease.as_secs().clamp(1, 12 * 3600) as i32;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(sqs.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    // A long poll waits up to 20 s on its own.
                    .operation_attempt_timeout(CALL_TIMEOUT + Duration::from_secs(20))
                    .build(),
            );
        if let Some(url) = &sqs.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        Ok(SqsQueue {
            client: Client::new(&sdk),
            queue_name: sqs.queue_name,
            url: Mutex::new((!sqs.queue_url.is_empty()).then_some(sqs.queue_url)),
            lease_secs,
            wait: sqs.wait_time.min(Duration::from_secs(20)),
            max_messages: sqs.max_messages.clamp(1, MAX_BATCH as u32) as i32,
        })
    }

    /// The queue URL: configured, or found by name (creating the queue when missing).
    async fn url(&self) -> Result<String, QueueError> {
        let mut url = self.url.lock().await;
        if let Some(url) = url.as_ref() {
            return Ok(url.clone());
        }
        let found = match self
            .client
            .get_queue_url()
            .queue_name(&self.queue_name)
            .send()
            .await
        {
            Ok(out) => out.queue_url,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                self.client
                    .create_queue()
                    .queue_name(&self.queue_name)
                    .send()
                    .await
                    .map_err(|e| err("CreateQueue", e))?
                    .queue_url
            }
            Err(e) => return Err(err("GetQueueUrl", e)),
        };
        let found =
            found.ok_or_else(|| QueueError::Backend("SQS answered without a queue URL".into()))?;
        *url = Some(found.clone());
        Ok(found)
    }

    pub(crate) async fn push(&self, payloads: &[Bytes]) -> Result<Vec<usize>, QueueError> {
        let url = self.url().await?;
        let mut failed = Vec::new();
        let mut start = 0;
        while start < payloads.len() {
            // Up to 10 entries and 256 KiB per request.
            let mut end = start;
            let mut bytes = 0;
            while end < payloads.len()
                && end - start < MAX_BATCH
                && (end == start || bytes + payloads[end].len() <= MAX_MESSAGE_BYTES)
            {
                bytes += payloads[end].len();
                end += 1;
            }
            let mut request = self.client.send_message_batch().queue_url(&url);
            for (i, payload) in payloads[start..end].iter().enumerate() {
                let body = String::from_utf8_lossy(payload).into_owned();
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| err("SendMessageBatch entry", e))?;
                request = request.entries(entry);
            }
            let out = request.send().await.map_err(|e| err("SendMessageBatch", e));
            match out {
                Ok(out) => {
                    for entry in out.failed {
                        if let Ok(i) = entry.id.parse::<usize>() {
                            failed.push(start + i);
                        }
                    }
                }
                // Nothing after this batch was tried: report those as failed too, unless none went yet.
                Err(e) if start == 0 => return Err(e),
                Err(_) => {
                    failed.extend(start..payloads.len());
                    return Ok(failed);
                }
            }
            start = end;
        }
        Ok(failed)
    }

    pub(crate) async fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Leased>, QueueError> {
        let url = self.url().await?;
        let wait = wait.min(self.wait).as_secs() as i32;
        let out = self
            .client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages((max.max(1) as i32).min(self.max_messages))
            .visibility_timeout(self.lease_secs)
            .wait_time_seconds(wait)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await
            .map_err(|e| err("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let reclaimed = m
                    .attributes
                    .as_ref()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n > 1);
                Some(Leased {
                    handle: m.receipt_handle?,
                    payload: Bytes::from(m.body.unwrap_or_default()),
                    reclaimed,
                })
            })
            .collect())
    }

    pub(crate) async fn ack(&self, handles: &[String]) -> Result<(), QueueError> {
        let url = self.url().await?;
        for chunk in handles.chunks(MAX_BATCH) {
            let mut request = self.client.delete_message_batch().queue_url(&url);
            for (i, handle) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .map_err(|e| err("DeleteMessageBatch entry", e))?;
                request = request.entries(entry);
            }
            request
                .send()
                .await
                .map_err(|e| err("DeleteMessageBatch", e))?;
        }
        Ok(())
    }

    pub(crate) async fn renew(&self, handles: &[String]) -> Result<(), QueueError> {
        self.visibility(handles, self.lease_secs).await
    }

    pub(crate) async fn release(&self, handles: &[String]) -> Result<(), QueueError> {
        self.visibility(handles, 0).await
    }

    async fn visibility(&self, handles: &[String], secs: i32) -> Result<(), QueueError> {
        if handles.is_empty() {
            return Ok(());
        }
        let url = self.url().await?;
        for chunk in handles.chunks(MAX_BATCH) {
            let mut request = self
                .client
                .change_message_visibility_batch()
                .queue_url(&url);
            for (i, handle) in chunk.iter().enumerate() {
                let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(secs)
                    .build()
                    .map_err(|e| err("ChangeMessageVisibilityBatch entry", e))?;
                request = request.entries(entry);
            }
            request
                .send()
                .await
                .map_err(|e| err("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }
}
