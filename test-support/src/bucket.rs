//! An S3 bucket per test.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::services::S3Service;
use crate::{clean_up_on_own_thread, setup_on_own_thread, unique_name};

/// A bucket created for one test on the server of [`S3Service`], emptied and deleted when this
/// is dropped: at the end of the test, and also when the test panics. [`TestBucket::remove`]
/// does it at a chosen point instead, in the caller's runtime, and fails the test if it cannot.
#[derive(Debug)]
pub struct TestBucket {
    service: S3Service,
    name: String,
    removed: bool,
}

impl TestBucket {
    /// A fresh bucket on the server of `CAIRN_TEST_S3_*`; `None` (skipped) when they are unset.
    pub fn from_env() -> Option<TestBucket> {
        Some(TestBucket::create(&S3Service::from_env()?))
    }

    /// Creates `cairn-test-<random>` on `service`'s server. Panics if it cannot.
    pub fn create(service: &S3Service) -> TestBucket {
        let name = unique_name("cairn-test-");
        let (for_thread, bucket) = (service.clone(), name.clone());
        let created = setup_on_own_thread(move || async move {
            client(&for_thread)
                .create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .map(drop)
                .map_err(|error| DisplayErrorContext(error).to_string())
        });
        if let Err(error) = created {
            panic!(
                "creating test bucket {name} at {}: {error}",
                service.endpoint
            );
        }
        TestBucket {
            service: service.clone(),
            name,
            removed: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server the bucket is on, with the credentials that reach it.
    pub fn service(&self) -> &S3Service {
        &self.service
    }

    /// Empties and deletes the bucket now. Panics if it cannot.
    pub async fn remove(mut self) {
        self.removed = true;
        if let Err(error) = empty_and_delete(&client(&self.service), &self.name).await {
            panic!("removing test bucket {}: {error}", self.name);
        }
    }
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // The client is made on the cleanup thread: one made in the test's runtime may hold
        // connections of that runtime.
        let (service, bucket) = (self.service.clone(), self.name.clone());
        clean_up_on_own_thread(&format!("test bucket {}", self.name), move || async move {
            empty_and_delete(&client(&service), &bucket).await
        });
    }
}

/// An S3 client for `service`: path-style addressing, static credentials, the SDK's defaults
/// otherwise (rustls, retries). Tests use it to look inside a bucket.
pub fn client(service: &S3Service) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(service.region.clone()))
        .endpoint_url(&service.endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            &service.access_key,
            &service.secret_key,
            None,
            None,
            "cairn-test-support",
        ))
        .build();
    Client::from_conf(config)
}

/// Deletes every key of `bucket`, then the bucket. A bucket that is already gone is removed.
async fn empty_and_delete(client: &Client, bucket: &str) -> Result<(), String> {
    // A server that is still finishing a write can add a key after the listing: a few rounds.
    const ROUNDS: u32 = 3;
    for round in 1..=ROUNDS {
        let mut continuation = None;
        loop {
            let listed = client
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(continuation.take())
                .send()
                .await;
            let listed = match listed {
                Ok(listed) => listed,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|error| error.is_no_such_bucket()) =>
                {
                    return Ok(());
                }
                Err(error) => return Err(format!("listing: {}", DisplayErrorContext(error))),
            };
            let keys: Vec<ObjectIdentifier> = listed
                .contents()
                .iter()
                .filter_map(|object| object.key())
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect();
            if !keys.is_empty() {
                let delete = Delete::builder()
                    .set_objects(Some(keys))
                    .quiet(true)
                    .build()
                    .map_err(|error| error.to_string())?;
                client
                    .delete_objects()
                    .bucket(bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|error| format!("deleting keys: {}", DisplayErrorContext(error)))?;
            }
            continuation = listed.next_continuation_token().map(str::to_owned);
            if continuation.is_none() {
                break;
            }
        }
        match client.delete_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(()),
            Err(error) if round == ROUNDS => {
                return Err(format!(
                    "deleting the bucket: {}",
                    DisplayErrorContext(error)
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(())
}
