//! `ip_prefix(ip_address, prefix_bits)`: the network an address belongs to,
//! as Trino writes an `IPPREFIX` (`'203.0.113.0/24'`). NULL for text that
//! is not an address, or a prefix longer than the address.

use std::net::IpAddr;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::common::Result;

use super::Arg;

pub fn ip_prefix(ip: &Arg, bits: &Arg) -> Result<ArrayRef> {
    let (ips, bits) = (ip.strings()?, bits.int64s()?);
    let out: StringArray = (0..ips.len())
        .map(|i| {
            if ips.is_null(i) || bits.is_null(i) {
                return None;
            }
            let ip: IpAddr = ips.value(i).trim().parse().ok()?;
            let bits = u8::try_from(bits.value(i)).ok()?;
            Some(ipnet::IpNet::new(ip, bits).ok()?.trunc().to_string())
        })
        .collect();
    Ok(Arc::new(out))
}
