"""The testing plugin's Piccolo app: its tables and migrations, built on the core's."""

import os

from piccolo.conf.apps import AppConfig

from plugins.testing.tables import TESTING_TABLES

APP_CONFIG = AppConfig(
    app_name="testing",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=list(TESTING_TABLES),
    migration_dependencies=["core.piccolo_app"],
    commands=[],
)
