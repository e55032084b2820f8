//! `site.toml`: the site-wide settings of a source folder.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A link in the site header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NavLink {
    pub title: String,
    pub url: String,
}

/// The contents of `site.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Absolute origin of the deployed site, e.g. `https://cairn.example.dev`, without a
    /// trailing slash. Canonical URLs, Open Graph URLs, JSON-LD and the sitemap use it.
    pub base_url: String,
    pub title: String,
    pub description: String,
    #[serde(default = "default_language")]
    pub language: String,
    /// Header navigation.
    #[serde(default)]
    pub nav: Vec<NavLink>,
    /// Settings of `sitegen deploy` (not shown to templates).
    #[serde(default, skip_serializing)]
    pub deploy: DeployConfig,
}

/// The `[deploy]` table of `site.toml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// The CloudFront distribution whose cache a deploy invalidates (what
    /// `--cloudfront-distribution` overrides).
    pub cloudfront_distribution: Option<String>,
}

fn default_language() -> String {
    "en".to_owned()
}

impl SiteConfig {
    pub fn parse(path: &Path, text: &str) -> Result<SiteConfig> {
        let mut config: SiteConfig = toml::from_str(text).map_err(|err| Error::Config {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        if !(config.base_url.starts_with("https://") || config.base_url.starts_with("http://")) {
            return Err(Error::Config {
                path: path.to_owned(),
                message: format!(
                    "base_url must be an absolute http(s) URL, got {:?}",
                    config.base_url
                ),
            });
        }
        while config.base_url.ends_with('/') {
            config.base_url.pop();
        }
        Ok(config)
    }

    /// The absolute URL of a site path such as `/docs/`.
    pub fn absolute(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_trimmed_and_checked() {
        let config = SiteConfig::parse(
            Path::new("site.toml"),
            "base_url = \"https://x.dev/\"\ntitle = \"X\"\ndescription = \"d\"\n",
        )
        .unwrap();
        assert_eq!(config.absolute("/a/"), "https://x.dev/a/");
        let err = SiteConfig::parse(
            Path::new("site.toml"),
            "base_url = \"x.dev\"\ntitle = \"X\"\ndescription = \"d\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("absolute"));
    }

    #[test]
    fn deploy_table_names_the_distribution() {
        let base = "base_url = \"https://x.dev\"\ntitle = \"X\"\ndescription = \"d\"\n";
        let config = SiteConfig::parse(Path::new("site.toml"), base).unwrap();
        assert_eq!(config.deploy.cloudfront_distribution, None);
        let text = format!("{base}[deploy]\ncloudfront_distribution = \"E2ABC\"\n");
        let config = SiteConfig::parse(Path::new("site.toml"), &text).unwrap();
        assert_eq!(
            config.deploy.cloudfront_distribution.as_deref(),
            Some("E2ABC")
        );
        let text = format!("{base}[deploy]\ndistribution = \"E2ABC\"\n");
        let err = SiteConfig::parse(Path::new("site.toml"), &text).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
