//! The resolver that hands reqwest only permitted addresses: the connection goes to exactly
//! the checked address (no second lookup, so DNS rebinding between check and connect is
//! impossible).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::policy::Policy;

/// A reqwest resolver that looks a name up once (tokio, the system resolver) and returns only
/// the addresses the policy permits; reqwest connects to what it returns. When none is
/// permitted the lookup fails naming the addresses and why.
#[derive(Debug)]
pub struct PinnedResolver {
    /// What is permitted.
    pub policy: Arc<Policy>,
}

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (permitted, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                found.into_iter().partition(|a| policy.check_addr(a.ip()).is_ok());
            if permitted.is_empty() {
                let why = match refused.first() {
                    Some(a) => policy.check_addr(a.ip()).err().unwrap_or_default(),
                    None => "no addresses".to_owned(),
                };
                let all = refused.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
                return Err(format!("refused: `{host}` resolves to {all}: {why}").into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}
