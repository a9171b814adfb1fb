"""The city's Piccolo app: its tables and migrations, built on the core's."""

import os

from piccolo.conf.apps import AppConfig

from provinces.hcmc.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="hcmc",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=list(TABLES),
    migration_dependencies=["core.piccolo_app"],
    commands=[],
)
