from pathlib import Path

from setuptools import find_packages, setup

PARQUET = ["duckdb>=1.1"]

setup(
    name="amp-luigi",
    version="0.1.0",
    description="Amplitude raw event export to Amazon S3, day by day, as a Luigi task graph.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["amp_luigi", "amp_luigi.*"]),
    python_requires=">=3.10",
    install_requires=[
        "luigi>=3.8,<4",
        "boto3>=1.36",
        "requests>=2.31",
        "python-dotenv>=1.0",
        "isal>=1.6",
        "pysimdjson>=6.0",
    ],
    extras_require={
        # ParquetDay: DuckDB's wheel has its json and parquet extensions built in (nothing is
        # downloaded at run time).
        "parquet": PARQUET,
        # luigid's task history (record_task_history) uses SQLAlchemy's 1.x API.
        "history": ["sqlalchemy>=1.4,<2"],
        # luigid's /metrics ([scheduler] metrics_collector = prometheus) needs prometheus_client.
        "prometheus": ["luigi[prometheus]>=3.8,<4"],
        "test": [
            "luigi[prometheus]>=3.8,<4",  # the luigid metrics test; its parser checks --metrics-file
            "aiosmtpd>=1.4",  # a local SMTP sink for the failure e-mail test
            "pyyaml>=6",  # the documented alert rules are read as YAML
            "moto[server,s3]>=5.1",
            "pytest>=8",
            "hypothesis>=6.100",
            "ruff>=0.17,<0.18",
            "mypy>=1.10",
            "types-requests",
            *PARQUET,
            # the tests read the Parquet as a consumer would, with pyarrow's own S3FileSystem
            "pyarrow>=17",
        ],
    },
    entry_points={"console_scripts": ["amp-luigi=amp_luigi.__main__:main"]},
)
