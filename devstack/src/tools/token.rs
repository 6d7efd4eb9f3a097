//! `devstack token`: a token minted by the running stack's local OpenID
//! issuer, for wscat, curl or a test (`?token=…` on the edge URL).

use local_issuer::MintRequest;

use crate::issuer;

/// Arguments of `devstack token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The user's id (`sub`, the `userId` of the user's messages).
    #[arg(long)]
    pub sub: String,
    /// The `email` claim.
    #[arg(long)]
    pub email: Option<String>,
    /// The `name` claim.
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds until the token expires [default: the issuer's, 300; at most a day].
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<i64>,
    /// The signature algorithm.
    #[arg(long, value_enum, default_value_t = Alg::Rs256)]
    pub alg: Alg,
    /// The running stack's issuer (the banner's `sign-in` line).
    #[arg(long, value_name = "URL", default_value = issuer::DEFAULT_URL)]
    pub issuer: String,
}

/// The algorithms the local issuer signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Alg {
    Rs256,
    Es256,
}

impl TokenArgs {
    /// What the issuer is asked to mint.
    pub fn request(&self) -> MintRequest {
        MintRequest {
            email: self.email.clone(),
            name: self.name.clone(),
            expires_in: self.ttl,
            alg: Some(
                match self.alg {
                    Alg::Rs256 => "RS256",
                    Alg::Es256 => "ES256",
                }
                .to_string(),
            ),
            ..MintRequest::for_user(&self.sub)
        }
    }
}

/// Prints the token on stdout (nothing else, so `$(devstack token …)` works).
pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let token = issuer::mint(&args.issuer, &args.request()).await?;
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_become_the_mint_request() {
        let args = TokenArgs {
            sub: "alice".into(),
            email: None,
            name: None,
            ttl: Some(60),
            alg: Alg::Es256,
            issuer: issuer::DEFAULT_URL.into(),
        };
        let request = args.request();
        assert_eq!(request.alg.as_deref(), Some("ES256"));
        assert_eq!(request.expires_in, Some(60));
        assert_eq!(request.sub, "alice");
    }
}
