//! The contrastive core that both sides share: CPC's InfoNCE, its W_k predictors and the
//! sampling of positives and negatives ([`cpc`]), the view losses NT-Xent and MoCo's
//! InfoNCE ([`views`]), and the weighted kNN classifier of the monitors ([`knn`]). The
//! agent's auxiliary heads (`crate::rl::auxiliary`) and the standalone trainers
//! (`crate::pretrain`) are built on it; it depends on neither.

pub mod cpc;
pub mod knn;
pub mod views;
