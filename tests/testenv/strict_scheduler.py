"""EventBridge Scheduler's schedule expressions, checked as the service checks them.

moto stores any ScheduleExpression; EventBridge Scheduler answers ValidationException
"Invalid Schedule Expression ..." to one that is not ("Schedule types on EventBridge
Scheduler", user guide):
- `rate(value unit)`: a positive whole number and minute(s), hour(s) or day(s);
- `cron(minutes hours day-of-month month day-of-week year)`: six fields;
- `at(yyyy-mm-ddThh:mm:ss)`.

and to a recurring schedule's StartDate more than 5 minutes ago, on update as on create
("The StartDate you specify cannot be earlier than 5 minutes ago."; moto checks only cron
expressions on create).
"""
import re
import time

from moto.scheduler import models
from moto.scheduler.exceptions import ValidationException

RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\((\S+ ){5}\S+\)$")
AT = re.compile(r"^at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)$")


def check_expression(expression):
    rate = RATE.match(expression or "")
    valid = (rate and int(rate.group(1)) > 0) or CRON.match(expression or "") or AT.match(expression or "")
    if not valid:
        raise ValidationException(message=f"Invalid Schedule Expression {expression}.")


def check_start_date(expression, start_date):
    if start_date is None or (expression or "").startswith("at("):
        return
    if isinstance(start_date, str):
        return  # moto's own parsing applies
    if float(start_date) < time.time() - 300:
        raise ValidationException(message="The StartDate you specify cannot be earlier than 5 minutes ago.")


MOTO_CREATE = models.EventBridgeSchedulerBackend.create_schedule
MOTO_UPDATE = models.EventBridgeSchedulerBackend.update_schedule


def create_schedule(self, *args, **kwargs):
    check_expression(kwargs.get("schedule_expression"))
    check_start_date(kwargs.get("schedule_expression"), kwargs.get("start_date"))
    return MOTO_CREATE(self, *args, **kwargs)


def update_schedule(self, *args, **kwargs):
    check_expression(kwargs.get("schedule_expression"))
    check_start_date(kwargs.get("schedule_expression"), kwargs.get("start_date"))
    return MOTO_UPDATE(self, *args, **kwargs)


def apply():
    """Replaces moto's schedule writes with these; called once at start."""
    models.EventBridgeSchedulerBackend.create_schedule = create_schedule
    models.EventBridgeSchedulerBackend.update_schedule = update_schedule
