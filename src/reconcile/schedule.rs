//! EcsTaskSchedule against EventBridge Scheduler: the executor of [`crate::plan::schedule`].
//!
//! Each pass reads the schedule (GetSchedule; EventBridge Scheduler has no batch read) and
//! sends CreateSchedule, one UpdateSchedule with every member (it replaces the schedule), or
//! nothing. A new revision of a referenced EcsTaskDefinition reaches the schedule at once.

use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
use kube::ResourceExt;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ReflectHandle;

use super::observations::Observations;
use super::references::{self, Refers};
use super::{Context, Error, LabelSelector, Managed, Note, Outcome, State, claim};
use crate::api::schedule::ScheduleState;
use crate::api::{
    CommonStatus, EcsCluster, EcsTaskDefinition, EcsTaskSchedule, EcsTaskScheduleStatus, ManagementOptions,
};
use crate::ecs::client::{Ecs, Found};
use crate::ecs::ownership;
use crate::plan::schedule::{self as planner, Plan, Wanted};

/// The EcsTaskSchedule controller: also woken when a referenced EcsCluster or
/// EcsTaskDefinition changes, so a new revision is scheduled at once.
pub fn controller(
    controller: Controller<EcsTaskSchedule>,
    clusters: ReflectHandle<EcsCluster>,
    task_definitions: ReflectHandle<EcsTaskDefinition>,
    selector: Option<LabelSelector>,
) -> Controller<EcsTaskSchedule> {
    references::woken_by_references(controller, clusters, task_definitions, selector)
}

impl Refers for EcsTaskSchedule {
    fn cluster_ref(&self) -> Option<&str> {
        self.spec.task.cluster_ref.as_ref().map(|r| r.name.as_str())
    }

    fn cluster(&self) -> Option<&str> {
        self.spec.task.run.cluster.as_deref()
    }

    fn task_definition_ref(&self) -> Option<&str> {
        self.spec.task.task_definition_ref.as_ref().map(|r| r.name.as_str())
    }

    fn task_definition(&self) -> Option<&str> {
        self.spec.task.run.task_definition.as_deref()
    }
}

impl EcsTaskSchedule {
    /// The schedule's name: spec.scheduleName, else metadata.name.
    pub fn schedule_name(&self) -> String {
        self.spec.schedule_name.clone().unwrap_or_else(|| self.name_any())
    }

    /// The schedule group: spec.groupName, else EventBridge Scheduler's `default`.
    pub fn group_name(&self) -> String {
        self.spec.group_name.clone().unwrap_or_else(|| "default".into())
    }

    /// `group/name`, as Events and diff name the schedule.
    fn display_name(&self) -> String {
        format!("{}/{}", self.group_name(), self.schedule_name())
    }

    /// The schedule this object asks for, its cluster and task definition resolved.
    pub fn wanted(&self, cluster: &str, task_definition: &str) -> Result<Wanted, Error> {
        let now = aws_sdk_scheduler::primitives::DateTime::from(std::time::SystemTime::now());
        planner::wanted(&self.spec, cluster, task_definition, &ownership::tags_for(self), now).map_err(Error::Invalid)
    }

    /// What applying this object would do to the schedule GetSchedule `reported`, and the
    /// Adopted note when it takes one over; Err when it may not touch it (NotOwned). `diff`
    /// asks this, and [`Managed::apply`] does what it says.
    pub fn preview(&self, wanted: &Wanted, reported: Option<&GetScheduleOutput>) -> Result<(Plan, Vec<Note>), Error> {
        let now = aws_sdk_scheduler::primitives::DateTime::from(std::time::SystemTime::now());
        let observed = reported.and_then(|r| planner::observed(r, now));
        let mut notes = vec![];
        if let Some(observed) = &observed {
            let what = format!("schedule {}", self.display_name());
            notes.extend(claim(self, &planner::task_tags(&observed.target), &what)?);
        }
        Ok((planner::plan(wanted, observed.as_ref()), notes))
    }

    /// The writes `plan` makes, for `diff`.
    pub fn writes(&self, plan: &Plan) -> Vec<crate::plan::Write> {
        planner::writes(plan, &self.display_name())
    }
}

/// GetSchedule of `obj`'s schedule; None when there is none.
pub async fn get_schedule(ecs: &Ecs, obj: &EcsTaskSchedule) -> Result<Option<GetScheduleOutput>, Error> {
    Ok(ecs
        .scheduler_call("GetSchedule", |c| {
            c.get_schedule()
                .name(obj.schedule_name())
                .group_name(obj.group_name())
                .send()
        })
        .await
        .found()?)
}

impl Managed for EcsTaskSchedule {
    type Status = EcsTaskScheduleStatus;
    type Observed = ();

    fn observations(ctx: &Context) -> &Observations<Self::Observed> {
        &ctx.observed.schedules
    }

    fn status(&self) -> Option<&Self::Status> {
        self.status.as_ref()
    }

    fn common(status: &mut Self::Status) -> &mut CommonStatus {
        &mut status.common
    }

    fn options(&self) -> ManagementOptions {
        ManagementOptions {
            region: self.spec.region.clone(),
            deletion_policy: self.spec.deletion_policy,
            adopt: self.spec.adopt,
            ..ManagementOptions::default()
        }
    }

    async fn apply(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        let (ecs, region) = ctx.ecs_for(self).await?;
        let previous = self.status.clone().unwrap_or_default();
        let mut status = EcsTaskScheduleStatus {
            region: Some(region.clone()),
            ..previous
        };
        let target = match references::resolve(self, ctx, &region)? {
            Ok(target) => target,
            Err(waiting) => {
                let state = waiting.state(ctx.settings.resync_interval);
                return Ok(Outcome {
                    status,
                    state,
                    events: vec![],
                });
            }
        };
        let task_definition = target.task_definition()?;
        let wanted = self.wanted(&target.cluster, &task_definition)?;
        let reported = get_schedule(&ecs, self).await?;
        let (plan, mut events) = self.preview(&wanted, reported.as_ref())?;
        let arn = match plan {
            Plan::Create => {
                let arn = create_schedule(&ecs, self, &wanted).await?;
                events.push(Note::normal(
                    "Created",
                    format!("created schedule {}", self.display_name()),
                ));
                arn
            }
            Plan::Update(changes) => {
                let arn = update_schedule(&ecs, self, &wanted).await?;
                let fields: Vec<String> = changes.into_iter().map(|c| c.field).collect();
                // NB: a new revision of a referenced task definition is asked for too.
                let moved = status.task_definition_arn.as_deref() != Some(task_definition.as_str())
                    || status.cluster_arn.as_deref() != Some(target.cluster.as_str());
                let asked_for = moved || status.common.observed_generation != self.metadata.generation;
                events.extend(Note::changed(asked_for, &fields));
                arn
            }
            Plan::InSync => reported.as_ref().and_then(|r| r.arn()).unwrap_or_default().to_string(),
        };
        status.schedule_arn = Some(arn);
        status.state = Some(wanted.state.as_str().to_string());
        status.cluster_arn = Some(target.cluster);
        status.task_definition_arn = Some(task_definition);
        let state = State::Ready {
            reason: "Scheduled",
            message: match self.spec.state {
                ScheduleState::Enabled => format!("runs {}", self.spec.schedule_expression),
                ScheduleState::Disabled => "DISABLED: runs nothing".to_string(),
            },
        };
        Ok(Outcome { status, state, events })
    }

    async fn observe(&self, ctx: &Context) -> Result<Outcome<Self::Status>, Error> {
        // NB: EcsTaskSchedule has no managementPolicy; the core never calls this for it.
        self.apply(ctx).await
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Vec<Note>, Error> {
        let (ecs, _) = ctx.ecs_for(self).await?;
        let Some(reported) = get_schedule(&ecs, self).await? else {
            return Ok(vec![]);
        };
        let tags = reported.target().map(planner::task_tags).unwrap_or_default();
        if !ownership::owned_by(&tags, self) {
            return Ok(vec![]);
        }
        if self.spec.deletion_policy == crate::api::DeletionPolicy::Retain {
            return Ok(vec![Note::normal(
                "Retained",
                format!("left schedule {} in EventBridge Scheduler", self.display_name()),
            )]);
        }
        ecs.scheduler_call("DeleteSchedule", |c| {
            c.delete_schedule()
                .name(self.schedule_name())
                .group_name(self.group_name())
                .send()
        })
        .await
        .found()?;
        Ok(vec![Note::normal(
            "Deleted",
            format!("deleted schedule {}", self.display_name()),
        )])
    }
}

/// Sets every member of a schedule on a CreateSchedule or UpdateSchedule builder (two SDK
/// types with the same setters).
macro_rules! schedule_members {
    ($builder:expr, $obj:expr, $wanted:expr) => {
        $builder
            .name($obj.schedule_name())
            .group_name($obj.group_name())
            .schedule_expression(&$wanted.schedule_expression)
            .set_schedule_expression_timezone($wanted.schedule_expression_timezone.clone())
            .flexible_time_window($wanted.flexible_time_window.clone())
            .set_start_date($wanted.start_date)
            .set_end_date($wanted.end_date)
            .state($wanted.state.clone())
            .set_description($wanted.description.clone())
            .target($wanted.target.clone())
    };
}

/// CreateSchedule; the schedule's ARN.
async fn create_schedule(ecs: &Ecs, obj: &EcsTaskSchedule, wanted: &Wanted) -> Result<String, Error> {
    let out = ecs
        .scheduler_call("CreateSchedule", |c| {
            schedule_members!(c.create_schedule(), obj, wanted).send()
        })
        .await?;
    Ok(out.schedule_arn().to_string())
}

/// UpdateSchedule with every member: it replaces the schedule.
async fn update_schedule(ecs: &Ecs, obj: &EcsTaskSchedule, wanted: &Wanted) -> Result<String, Error> {
    let out = ecs
        .scheduler_call("UpdateSchedule", |c| {
            schedule_members!(c.update_schedule(), obj, wanted).send()
        })
        .await?;
    Ok(out.schedule_arn().to_string())
}
