
mod pipeline;
mod runs;
mod dataset;
mod log;
mod signed_urls;
mod gateway;
mod reload;
