//! Test support shared by the operator's integration tests.
#![allow(dead_code)]

pub mod kube;
