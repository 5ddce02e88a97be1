//! Embedded single-file store (SQLite). Stub: to be implemented.
#![allow(dead_code, unused_variables)]

use std::path::Path;

use async_trait::async_trait;

use crate::backend::{Backend, IndexInfo, IndexSpec, StorageStats};
use crate::document::{BatchReport, Document, DocumentPatch, NewDocument, SearchHit, SearchOptions};
use crate::embedder::Embedder;
use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct EmbeddedBackend {}

impl EmbeddedBackend {
    pub(crate) async fn open(path: &Path, model: &str, dims: usize) -> Result<Self> {
        Err(Error::Storage("embedded store not implemented yet".into()))
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn write_batch(&self, docs: Vec<NewDocument>, embedder: &dyn Embedder) -> Result<BatchReport> {
        todo!()
    }
    async fn get(&self, id: i64, with_embedding: bool) -> Result<Option<Document>> {
        todo!()
    }
    async fn get_by_key(&self, key: &str, with_embedding: bool) -> Result<Option<Document>> {
        todo!()
    }
    async fn update(&self, id: i64, patch: &DocumentPatch, embedding: Option<Vec<f32>>) -> Result<Option<Document>> {
        todo!()
    }
    async fn delete(&self, id: i64) -> Result<bool> {
        todo!()
    }
    async fn search(&self, query: &[f32], opts: &SearchOptions, exclude: Option<i64>) -> Result<Vec<SearchHit>> {
        todo!()
    }
    async fn list(&self, after_id: i64, limit: usize, with_embedding: bool) -> Result<Vec<Document>> {
        todo!()
    }
    async fn stats(&self) -> Result<StorageStats> {
        todo!()
    }
    async fn create_index(&self, spec: &IndexSpec) -> Result<IndexInfo> {
        todo!()
    }
    async fn drop_index(&self) -> Result<bool> {
        todo!()
    }
    async fn rebuild_index(&self, concurrently: bool) -> Result<IndexInfo> {
        todo!()
    }
    async fn analyze(&self) -> Result<()> {
        todo!()
    }
    async fn ping(&self) -> Result<()> {
        todo!()
    }
    fn identity(&self) -> String {
        todo!()
    }
    fn kind(&self) -> &'static str {
        "embedded"
    }
}
