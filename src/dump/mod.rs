//! The logical-dump jobs: [`extract`] (`weir-extract`) writes a weir archive from one
//! consistent snapshot, [`load`] (`weir-load`) restores one all or nothing, and [`inspect`]
//! (`weir-inspect`) lists, verifies and prints one without a database.

pub mod extract;
pub mod inspect;
pub mod load;
