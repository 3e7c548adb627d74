//! The On-Premises API client.
