"""The optional query layers after VerifyDay: typed Parquet (ParquetDay), its column list, and the
Athena tables over it and over the raw objects. Installed with `pip install 'amp-luigi[parquet]'`."""
