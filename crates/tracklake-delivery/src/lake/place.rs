//! Where a lake URL points: a local directory (or `file://` URL) or
//! `s3://bucket/prefix/`, as the `object_store` stores that reach it. The
//! lake, its Delta table and outside tables (`CREATE EXTERNAL TABLE`) are
//! all opened here.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use url::Url;

use super::config::S3Config;
use crate::Error;

/// One location and the stores that reach it.
#[derive(Clone)]
pub(crate) struct Place {
    /// The bucket, or the whole file system.
    pub root: Arc<dyn ObjectStore>,
    /// Rooted at the location: paths are relative to it.
    pub here: Arc<dyn ObjectStore>,
    /// The location as a directory URL (`file:///…/`, `s3://bucket/prefix/`).
    pub url: Url,
    /// For messages: the directory or the URL as configured.
    pub shown: String,
}

/// Whether a local directory that is not there is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    Create,
    Refuse,
}

impl Place {
    /// `url`: a directory, `file://` URL or `s3://bucket/prefix/`; empty is
    /// `<data_dir>/lake`.
    pub fn open(
        url: &str,
        s3: &S3Config,
        data_dir: &FsPath,
        missing: Missing,
    ) -> Result<Place, Error> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return Self::s3(url, rest, s3);
        }
        let dir = match url {
            "" => data_dir.join("lake"),
            url if url.contains("://") && !url.starts_with("file://") => {
                return Err(Error::UnsupportedLake(url.to_owned()));
            }
            url => url.trim_start_matches("file://").into(),
        };
        let create_error = |source| Error::CreateLake {
            path: dir.display().to_string(),
            source,
        };
        if missing == Missing::Create {
            std::fs::create_dir_all(&dir).map_err(create_error)?;
        }
        let dir = std::fs::canonicalize(&dir).map_err(create_error)?;
        let here = LocalFileSystem::new_with_prefix(&dir).map_err(Error::Store)?;
        let url = Url::from_directory_path(&dir)
            .map_err(|()| Error::UnsupportedLake(dir.display().to_string()))?;
        Ok(Place {
            root: Arc::new(LocalFileSystem::new()),
            here: Arc::new(here),
            url,
            shown: dir.display().to_string(),
        })
    }

    /// `bucket/prefix` of an `s3://` URL.
    fn s3(url: &str, bucket_and_prefix: &str, s3: &S3Config) -> Result<Place, Error> {
        let (bucket, prefix) = bucket_and_prefix
            .split_once('/')
            .unwrap_or((bucket_and_prefix, ""));
        if bucket.is_empty() {
            return Err(Error::UnsupportedLake(url.to_owned()));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(s3.allow_http)
            .with_virtual_hosted_style_request(s3.virtual_hosted_style);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &s3.sse_kms_key_id {
            builder = builder.with_sse_kms_encryption(key);
        }
        // The environment wins; the shared AWS files fill in what it lacks.
        let profile = crate::aws_profile::load();
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && let (Some(id), Some(secret)) = (profile.access_key_id, profile.secret_access_key)
        {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = profile.session_token {
                builder = builder.with_token(token);
            }
        }
        let region = s3
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .or(profile.region);
        if let Some(region) = region {
            builder = builder.with_region(region);
        }
        let root: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(Error::Store)?);
        let bucket_url = Url::parse(&format!("s3://{bucket}/"))
            .map_err(|_| Error::UnsupportedLake(url.to_owned()))?;
        let place = Place {
            root: root.clone(),
            here: root,
            url: bucket_url,
            shown: url.to_owned(),
        };
        match prefix.trim_matches('/') {
            "" => Ok(place),
            prefix => place.join(prefix),
        }
    }

    /// The directory `dir` (one or more segments) under this place.
    pub fn join(&self, dir: &str) -> Result<Place, Error> {
        let dir = dir.trim_matches('/');
        let url = self
            .url
            .join(&format!("{dir}/"))
            .map_err(|_| Error::UnsupportedLake(format!("{}{dir}/", self.url)))?;
        Ok(Place {
            root: self.root.clone(),
            here: Arc::new(PrefixStore::new(self.here.clone(), dir)),
            shown: url.to_string(),
            url,
        })
    }
}
