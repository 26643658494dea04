"""Flask extensions, created unbound and initialised in ``create_app``."""
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from .jobs.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()   # every form and htmx request carries the token (X-CSRFToken header)
