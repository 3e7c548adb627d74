//! A simulator of the On-Premises API webhook CA endpoints, for tests and the local demo.
