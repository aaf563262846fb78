//! (to be written)

use super::Spec;

pub fn specs() -> Vec<Spec> {
    vec![]
}
