//! The lease table: one item per shard, in the KCL 2.x schema (attribute
//! names and types as `DynamoDBLeaseSerializer` writes them), so a table
//! written by the Java KCL can be resumed by shardwise and the other way
//! round. Every change is a conditional write on `leaseCounter`, the
//! fencing token: two workers can never both believe they own a shard.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::aws::{Retry, describe_error, retry_class};

// KCL 2.x attribute names (DynamoDBLeaseSerializer).
pub const LEASE_KEY: &str = "leaseKey";
pub const LEASE_OWNER: &str = "leaseOwner";
pub const LEASE_COUNTER: &str = "leaseCounter";
pub const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
pub const CHECKPOINT: &str = "checkpoint";
pub const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
pub const PARENT_SHARD_IDS: &str = "parentShardId";
pub const CHILD_SHARD_IDS: &str = "childShardIds";
/// Written by some early KCL 2.x releases; read, never written.
pub const CHILD_SHARD_IDS_OLD: &str = "childShardId";
pub const STARTING_HASH_KEY: &str = "startingHashKey";
pub const ENDING_HASH_KEY: &str = "endingHashKey";
// shardwise's own, extra attributes (KCL ignores them).
/// The stream the lease belongs to, to refuse a table of another stream.
pub const STREAM: &str = "shardwiseStream";
/// The owner's last MillisBehindLatest for the shard (for `status`).
pub const LAG_MILLIS: &str = "shardwiseMillisBehindLatest";
/// How the owner reads the shard, `polling` or `efo` (for `status`).
pub const RETRIEVAL: &str = "shardwiseRetrieval";

/// Checkpoint sentinels KCL writes besides sequence numbers.
pub const TRIM_HORIZON: &str = "TRIM_HORIZON";
pub const LATEST: &str = "LATEST";
pub const AT_TIMESTAMP: &str = "AT_TIMESTAMP";
pub const SHARD_END: &str = "SHARD_END";

/// One lease as read from the table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lease {
    pub key: String,
    pub owner: Option<String>,
    pub counter: u64,
    pub owner_switches: u64,
    /// A sequence number or one of the sentinels.
    pub checkpoint: String,
    pub checkpoint_sub: u64,
    pub parents: Vec<String>,
    pub children: Vec<String>,
    pub starting_hash_key: Option<String>,
    pub ending_hash_key: Option<String>,
    pub stream: Option<String>,
    pub lag_millis: Option<u64>,
    /// The retrieval of the worker that last took it.
    pub retrieval: Option<String>,
}

impl Lease {
    /// A new, unowned lease for a shard, starting at `checkpoint`.
    pub fn new_shard(
        key: &str,
        parents: Vec<String>,
        hash_key_range: Option<&aws_sdk_kinesis::types::HashKeyRange>,
        stream: &str,
        checkpoint: &str,
    ) -> Self {
        Lease {
            key: key.to_string(),
            checkpoint: checkpoint.to_string(),
            parents,
            starting_hash_key: hash_key_range.map(|r| r.starting_hash_key.clone()),
            ending_hash_key: hash_key_range.map(|r| r.ending_hash_key.clone()),
            stream: Some(stream.to_string()),
            ..Lease::default()
        }
    }

    pub fn is_finished(&self) -> bool {
        self.checkpoint == SHARD_END
    }

    /// Whether processing has begun: a sequence-number checkpoint, or done.
    pub fn has_started(&self) -> bool {
        self.is_finished() || self.checkpoint.bytes().all(|b| b.is_ascii_digit())
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let s = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        };
        let n = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse::<u64>().ok(),
            _ => None,
        };
        let ss = |name: &str| match item.get(name) {
            Some(AttributeValue::Ss(v)) => v.clone(),
            _ => Vec::new(),
        };
        let mut children = ss(CHILD_SHARD_IDS);
        if children.is_empty() {
            children = ss(CHILD_SHARD_IDS_OLD);
        }
        Some(Lease {
            key: s(LEASE_KEY)?,
            owner: s(LEASE_OWNER),
            counter: n(LEASE_COUNTER).unwrap_or(0),
            owner_switches: n(OWNER_SWITCHES).unwrap_or(0),
            checkpoint: s(CHECKPOINT).unwrap_or_else(|| TRIM_HORIZON.to_string()),
            checkpoint_sub: n(CHECKPOINT_SUB).unwrap_or(0),
            parents: ss(PARENT_SHARD_IDS),
            children,
            starting_hash_key: s(STARTING_HASH_KEY),
            ending_hash_key: s(ENDING_HASH_KEY),
            stream: s(STREAM),
            lag_millis: n(LAG_MILLIS),
            retrieval: s(RETRIEVAL),
        })
    }

    fn to_item(&self) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::new();
        item.insert(LEASE_KEY.into(), AttributeValue::S(self.key.clone()));
        item.insert(
            LEASE_COUNTER.into(),
            AttributeValue::N(self.counter.to_string()),
        );
        item.insert(
            OWNER_SWITCHES.into(),
            AttributeValue::N(self.owner_switches.to_string()),
        );
        item.insert(
            CHECKPOINT.into(),
            AttributeValue::S(self.checkpoint.clone()),
        );
        item.insert(
            CHECKPOINT_SUB.into(),
            AttributeValue::N(self.checkpoint_sub.to_string()),
        );
        if let Some(owner) = &self.owner {
            item.insert(LEASE_OWNER.into(), AttributeValue::S(owner.clone()));
        }
        // String sets cannot be empty in DynamoDB: absent when none.
        if !self.parents.is_empty() {
            item.insert(
                PARENT_SHARD_IDS.into(),
                AttributeValue::Ss(self.parents.clone()),
            );
        }
        if !self.children.is_empty() {
            item.insert(
                CHILD_SHARD_IDS.into(),
                AttributeValue::Ss(self.children.clone()),
            );
        }
        for (name, value) in [
            (STARTING_HASH_KEY, &self.starting_hash_key),
            (ENDING_HASH_KEY, &self.ending_hash_key),
            (STREAM, &self.stream),
        ] {
            if let Some(value) = value {
                item.insert(name.into(), AttributeValue::S(value.clone()));
            }
        }
        item
    }
}

/// Why a lease-table call failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The condition failed: another worker moved the lease. Never retried:
    /// the lease is gone.
    #[error("lease {key} was taken over by another worker")]
    Lost { key: String },
    /// Throttling, 5xx or the network: try again later.
    #[error("lease table \"{table}\" is unavailable: {detail}")]
    Unavailable { table: String, detail: String },
    /// Refused for good (missing table, no permission, bad request).
    #[error(
        "lease table \"{table}\" refused the request: {detail} (the worker needs \
         dynamodb:CreateTable, DescribeTable, Scan, PutItem, UpdateItem and DeleteItem on it)"
    )]
    Rejected { table: String, detail: String },
}

/// The lease table of one application.
#[derive(Clone, Debug)]
pub struct LeaseTable {
    client: aws_sdk_dynamodb::Client,
    name: String,
}

impl LeaseTable {
    pub fn new(client: aws_sdk_dynamodb::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn fail<E, R>(&self, key: &str, error: SdkError<E, R>) -> LeaseError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: crate::aws::HttpStatus + std::fmt::Debug + 'static,
    {
        if let SdkError::ServiceError(service) = &error
            && service.err().code() == Some("ConditionalCheckFailedException")
        {
            return LeaseError::Lost {
                key: key.to_string(),
            };
        }
        let detail = describe_error(&error);
        match retry_class(&error) {
            Retry::Transient => LeaseError::Unavailable {
                table: self.name.clone(),
                detail,
            },
            Retry::Permanent => LeaseError::Rejected {
                table: self.name.clone(),
                detail,
            },
        }
    }

    /// Creates the table (on-demand billing, `leaseKey` hash key, as KCL
    /// does) unless it exists, and waits until it is ACTIVE.
    ///
    /// # Errors
    /// [`LeaseError`] when DynamoDB cannot be reached or refuses.
    pub async fn create_if_missing(&self) -> Result<bool, LeaseError> {
        use aws_sdk_dynamodb::client::Waiters;
        let rejected = |detail: String| LeaseError::Rejected {
            table: self.name.clone(),
            detail,
        };
        let key = KeySchemaElement::builder()
            .attribute_name(LEASE_KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| rejected(e.to_string()))?;
        let attribute = AttributeDefinition::builder()
            .attribute_name(LEASE_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| rejected(e.to_string()))?;
        let created = match self
            .client
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key)
            .attribute_definitions(attribute)
            .send()
            .await
        {
            Ok(_) => true,
            Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => false,
            Err(e) => return Err(self.fail("", e)),
        };
        self.client
            .wait_until_table_exists()
            .table_name(&self.name)
            .wait(std::time::Duration::from_secs(120))
            .await
            .map_err(|e| rejected(describe_error(&e)))?;
        Ok(created)
    }

    /// Every lease, read consistently.
    ///
    /// # Errors
    /// [`LeaseError`] when the table cannot be read.
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.name)
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("", e))?;
            leases.extend(page.items().iter().filter_map(Lease::from_item));
        }
        leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(leases)
    }

    /// Creates a lease unless one exists for its shard. Returns whether it
    /// was created.
    ///
    /// # Errors
    /// [`LeaseError`] other than "exists".
    pub async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        match self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(lease.to_item()))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", LEASE_KEY)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match self.fail(&lease.key, e) {
                LeaseError::Lost { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// An `UpdateItem` on a held lease, fenced: it applies only while the
    /// owner and counter are still ours (`:next` is the counter + 1 that
    /// every such update writes). The one place the fencing rule lives.
    fn fenced_update(
        &self,
        key: &str,
        owner: &str,
        counter: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.name)
            .key(LEASE_KEY, AttributeValue::S(key.to_string()))
            .condition_expression("#owner = :owner AND #counter = :counter")
            .expression_attribute_names("#counter", LEASE_COUNTER)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .expression_attribute_values(":counter", AttributeValue::N(counter.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((counter + 1).to_string()))
    }

    /// Renews a held lease: `leaseCounter + 1`, if owner and counter are
    /// still ours. Returns the new counter.
    ///
    /// # Errors
    /// [`LeaseError::Lost`] when another worker moved it.
    pub async fn renew(&self, key: &str, owner: &str, counter: u64) -> Result<u64, LeaseError> {
        self.fenced_update(key, owner, counter)
            .update_expression("SET #counter = :next")
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(counter + 1)
    }

    /// Takes a lease (expired, free, or stolen) if its counter is still the
    /// one seen, noting the taker's retrieval. Returns the new counter.
    ///
    /// # Errors
    /// [`LeaseError::Lost`] when another worker moved it first.
    pub async fn take(
        &self,
        key: &str,
        seen_counter: u64,
        owner: &str,
        retrieval: &str,
    ) -> Result<u64, LeaseError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .key(LEASE_KEY, AttributeValue::S(key.to_string()))
            .update_expression(
                "SET #owner = :owner, #counter = :next, #retrieval = :retrieval ADD #switches :one",
            )
            .condition_expression("#counter = :counter")
            .expression_attribute_names("#counter", LEASE_COUNTER)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#switches", OWNER_SWITCHES)
            .expression_attribute_names("#retrieval", RETRIEVAL)
            .expression_attribute_values(":retrieval", AttributeValue::S(retrieval.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .expression_attribute_values(":counter", AttributeValue::N(seen_counter.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((seen_counter + 1).to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(seen_counter + 1)
    }

    /// Writes a checkpoint for a held lease (counter + 1, as KCL's
    /// checkpoint does). Returns the new counter.
    ///
    /// # Errors
    /// [`LeaseError::Lost`] when another worker moved it.
    pub async fn checkpoint(
        &self,
        key: &str,
        owner: &str,
        counter: u64,
        checkpoint: &str,
        sub: u64,
        lag_millis: Option<u64>,
    ) -> Result<u64, LeaseError> {
        let mut request = self
            .fenced_update(key, owner, counter)
            .expression_attribute_names("#checkpoint", CHECKPOINT)
            .expression_attribute_names("#sub", CHECKPOINT_SUB)
            .expression_attribute_names("#switches", OWNER_SWITCHES)
            .expression_attribute_values(":checkpoint", AttributeValue::S(checkpoint.to_string()))
            .expression_attribute_values(":sub", AttributeValue::N(sub.to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()));
        let mut update =
            "SET #counter = :next, #checkpoint = :checkpoint, #sub = :sub, #switches = :zero"
                .to_string();
        if let Some(lag) = lag_millis {
            update.push_str(", #lag = :lag");
            request = request
                .expression_attribute_names("#lag", LAG_MILLIS)
                .expression_attribute_values(":lag", AttributeValue::N(lag.to_string()));
        }
        request
            .update_expression(update)
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(counter + 1)
    }

    /// Records a finished parent's children (KCL's `childShardIds`).
    ///
    /// # Errors
    /// [`LeaseError`] when the table cannot be written.
    pub async fn set_children(&self, key: &str, children: &[String]) -> Result<(), LeaseError> {
        if children.is_empty() {
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.name)
            .key(LEASE_KEY, AttributeValue::S(key.to_string()))
            .update_expression("SET #children = :children")
            .condition_expression("attribute_exists(#key)")
            .expression_attribute_names("#children", CHILD_SHARD_IDS)
            .expression_attribute_names("#key", LEASE_KEY)
            .expression_attribute_values(":children", AttributeValue::Ss(children.to_vec()))
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(())
    }

    /// Deletes a finished lease (conditional on its `SHARD_END`), once its
    /// children have started. Returns whether it was deleted.
    ///
    /// # Errors
    /// [`LeaseError`] other than "no longer finished or gone".
    pub async fn delete_finished(&self, key: &str) -> Result<bool, LeaseError> {
        match self
            .client
            .delete_item()
            .table_name(&self.name)
            .key(LEASE_KEY, AttributeValue::S(key.to_string()))
            .condition_expression("#checkpoint = :end")
            .expression_attribute_names("#checkpoint", CHECKPOINT)
            .expression_attribute_values(":end", AttributeValue::S(SHARD_END.to_string()))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match self.fail(key, e) {
                LeaseError::Lost { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Gives a held lease up (owner removed, counter + 1), so that a peer
    /// can take it at once instead of waiting for it to expire.
    ///
    /// # Errors
    /// [`LeaseError::Lost`] when another worker moved it already.
    pub async fn release(&self, key: &str, owner: &str, counter: u64) -> Result<(), LeaseError> {
        self.fenced_update(key, owner, counter)
            .update_expression("SET #counter = :next REMOVE #owner")
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease exactly as the Java KCL 2.x serializer writes it.
    fn kcl_item() -> HashMap<String, AttributeValue> {
        let mut item = HashMap::new();
        let s = |v: &str| AttributeValue::S(v.to_string());
        let n = |v: u64| AttributeValue::N(v.to_string());
        item.insert("leaseKey".into(), s("shardId-000000000002"));
        item.insert("leaseOwner".into(), s("java-worker-1"));
        item.insert("leaseCounter".into(), n(42));
        item.insert("ownerSwitchesSinceCheckpoint".into(), n(1));
        item.insert(
            "checkpoint".into(),
            s("49568167373333333333333333333333333333333333333333333333"),
        );
        item.insert("checkpointSubSequenceNumber".into(), n(3));
        item.insert(
            "parentShardId".into(),
            AttributeValue::Ss(vec!["shardId-000000000000".into()]),
        );
        item.insert(
            "childShardId".into(),
            AttributeValue::Ss(vec!["shardId-000000000005".into()]),
        );
        item.insert("startingHashKey".into(), s("0"));
        item.insert(
            "endingHashKey".into(),
            s("170141183460469231731687303715884105727"),
        );
        item
    }

    #[test]
    fn a_kcl_lease_is_read_with_its_checkpoint_and_lineage() {
        let lease = Lease::from_item(&kcl_item()).expect("lease");
        assert_eq!(lease.key, "shardId-000000000002");
        assert_eq!(lease.owner.as_deref(), Some("java-worker-1"));
        assert_eq!((lease.counter, lease.owner_switches), (42, 1));
        assert_eq!(
            lease.checkpoint,
            "49568167373333333333333333333333333333333333333333333333"
        );
        assert_eq!(lease.checkpoint_sub, 3);
        assert_eq!(lease.parents, vec!["shardId-000000000000"]);
        assert_eq!(
            lease.children,
            vec!["shardId-000000000005"],
            "the early 2.x attribute is read"
        );
        assert_eq!(
            lease.ending_hash_key.as_deref(),
            Some("170141183460469231731687303715884105727")
        );
    }

    #[test]
    fn written_leases_carry_the_kcl_attribute_names_and_types() {
        let mut lease = Lease::from_item(&kcl_item()).expect("lease");
        lease.stream = Some("orders".into());
        let item = lease.to_item();
        for (name, kind) in [
            ("leaseKey", "S"),
            ("leaseOwner", "S"),
            ("leaseCounter", "N"),
            ("ownerSwitchesSinceCheckpoint", "N"),
            ("checkpoint", "S"),
            ("checkpointSubSequenceNumber", "N"),
            ("parentShardId", "SS"),
            ("childShardIds", "SS"),
            ("startingHashKey", "S"),
            ("endingHashKey", "S"),
            ("shardwiseStream", "S"),
        ] {
            let found = match item.get(name) {
                Some(AttributeValue::S(_)) => "S",
                Some(AttributeValue::N(_)) => "N",
                Some(AttributeValue::Ss(_)) => "SS",
                other => panic!("{name}: {other:?}"),
            };
            assert_eq!(found, kind, "{name}");
        }
        assert_eq!(Lease::from_item(&item), Some(lease));
    }
}
