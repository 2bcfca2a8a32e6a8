//! The DynamoDB app manager (aws-sdk-dynamodb on the I/O shard's runtime).
//!
//! Items use Sockudo's layout: one item per app, partition key `id`, the other attributes named like the SQL
//! columns (`policy`, `webhooks`, `allowed_origins` as JSON strings, or as DynamoDB lists/maps). Lookup by id
//! is a `GetItem`; lookup by key a `Scan` filtered on `key` (the table has no index on it; the shard caches and
//! the shared queries keep these rare). The table is created (on demand billing) when missing.

use std::collections::HashMap;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::info;

use crate::record::{self, AppRecord, Kind};
use crate::{AppSource, DynamoDbConfig, FindFuture, Lookup, OpenError, SourceError, DB_TIMEOUT};

pub(crate) struct DynamoDbSource {
    client: Client,
    table: String,
    /// True once the table is known to exist.
    ready: Mutex<bool>,
}

impl DynamoDbSource {
    pub(crate) async fn open(c: DynamoDbConfig) -> Result<DynamoDbSource, OpenError> {
        if c.table_name.is_empty() {
            return Err(OpenError::Invalid(
                "database.dynamodb.table_name is empty".into(),
            ));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(c.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(DB_TIMEOUT)
                    .operation_timeout(DB_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        if let Some(url) = &c.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "sockudo-config",
            ));
        }
        let sdk = loader.load().await;
        Ok(DynamoDbSource {
            client: Client::new(&sdk),
            table: c.table_name,
            ready: Mutex::new(false),
        })
    }

    /// Creates the table when it is missing (once per process, retried after a failure).
    async fn ensure_table(&self) -> Result<(), SourceError> {
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(());
        }
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                let id = "id".to_string();
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(&id)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .map_err(unavailable)?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(&id)
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(unavailable)?,
                    )
                    .send()
                    .await;
                if let Err(e) = created {
                    // Someone else may have created it meanwhile.
                    if !e
                        .as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception())
                    {
                        return Err(unavailable(DisplayErrorContext(e)));
                    }
                }
                info!(table = %self.table, "created the DynamoDB apps table");
            }
            Err(e) => return Err(unavailable(DisplayErrorContext(e))),
        }
        *ready = true;
        Ok(())
    }

    async fn query(&self, by: &Lookup) -> Result<Option<AppRecord>, SourceError> {
        self.ensure_table().await?;
        let item = match by {
            Lookup::Id(id) => {
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .key("id", AttributeValue::S(id.clone()))
                    .send()
                    .await
                    .map_err(|e| unavailable(DisplayErrorContext(e)))?
                    .item
            }
            Lookup::Key(key) => self.scan_for_key(key).await?,
        };
        Ok(item.and_then(|item| record_of(&item)))
    }

    async fn scan_for_key(
        &self,
        key: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, SourceError> {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#k = :k")
                .expression_attribute_names("#k", "key")
                .expression_attribute_values(":k", AttributeValue::S(key.to_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(DisplayErrorContext(e)))?;
            if let Some(item) = page.items.and_then(|items| items.into_iter().next()) {
                return Ok(Some(item));
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(None),
            }
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(e.to_string())
}

/// The record of a DynamoDB item: each known attribute as the text an SQL column would hold.
fn record_of(item: &HashMap<String, AttributeValue>) -> Option<AppRecord> {
    let cells: Vec<(&str, Option<String>)> = record::COLUMNS
        .iter()
        .map(|(column, kind)| (*column, item.get(*column).and_then(|v| text_of(v, *kind))))
        .collect();
    record::from_columns(cells)
}

fn text_of(value: &AttributeValue, kind: Kind) -> Option<String> {
    match value {
        AttributeValue::Null(_) => None,
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.clone()),
        AttributeValue::Bool(b) => Some(b.to_string()),
        other if kind == Kind::Json => Some(json_of(other).to_string()),
        // A list or map where a scalar belongs: passed on as JSON, so the record reports the field.
        other => Some(json_of(other).to_string()),
    }
}

fn json_of(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => {
            serde_json::from_str(n).unwrap_or_else(|_| Value::String(n.clone()))
        }
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(items) => Value::Array(items.iter().map(json_of).collect()),
        AttributeValue::M(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), json_of(v))).collect())
        }
        AttributeValue::Ss(items) => {
            Value::Array(items.iter().cloned().map(Value::String).collect())
        }
        _ => Value::Null,
    }
}

impl AppSource for DynamoDbSource {
    fn find<'a>(&'a self, by: &'a Lookup) -> FindFuture<'a> {
        Box::pin(self.query(by))
    }

    fn driver(&self) -> &'static str {
        "dynamodb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_records() {
        let item: HashMap<String, AttributeValue> = [
            ("id", AttributeValue::S("1".into())),
            ("key", AttributeValue::S("k".into())),
            ("secret", AttributeValue::S("s".into())),
            ("enabled", AttributeValue::Bool(true)),
            ("max_connections", AttributeValue::N("7".into())),
            (
                "policy",
                AttributeValue::S(r#"{"limits":{"max_event_batch_size":3}}"#.into()),
            ),
            (
                "allowed_origins",
                AttributeValue::L(vec![AttributeValue::S("https://a".into())]),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let r = record_of(&item).unwrap();
        assert_eq!(r["max_connections"], "7");
        assert_eq!(r["enabled"], true);
        assert_eq!(r["max_event_batch_size"], 3);
        assert_eq!(r["allowed_origins"][0], "https://a");
    }
}
