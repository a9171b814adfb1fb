"""The vaccination plugin's Piccolo app: its tables and migrations, built on the core's."""

import os

from piccolo.conf.apps import AppConfig

from plugins.vaccination.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="vaccination",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=list(TABLES),
    migration_dependencies=["core.piccolo_app"],
    commands=[],
)
