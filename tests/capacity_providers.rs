//! EcsCapacityProvider end to end: Auto Scaling group and Managed Instances providers made,
//! attached to a cluster by reference, changed in place, used by a service, and deleted in
//! either order, against the strict endpoint (tests/testenv/strict_capacity.py).

mod common;

use common::{
    Operator, admin_client, calls_of, delete_namespace, ecs_calls, ecs_client, ecs_writes, endpoint_control, event,
    gone, more_calls, namespace, object, ready, wait_condition, wait_for,
};
use ecs_operator::api::{EcsCapacityProvider, EcsCluster, EcsService};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

fn asg_provider(name: &str, ecs_name: &str, target_capacity: i32) -> Value {
    let group =
        format!("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:5e6f7a8b:autoScalingGroupName/{ecs_name}");
    object(
        "EcsCapacityProvider",
        name,
        json!({"name": ecs_name, "autoScalingGroupProvider": {
            "autoScalingGroupArn": group,
            "managedScaling": {"status": "ENABLED", "targetCapacity": target_capacity},
            "managedDraining": "ENABLED",
        }}),
    )
}

fn managed_instances_provider(name: &str, ecs_name: &str, min_vcpus: i32) -> Value {
    object(
        "EcsCapacityProvider",
        name,
        json!({"name": ecs_name, "clusterRef": {"name": "main"}, "managedInstancesProvider": {
            "infrastructureRoleArn": "arn:aws:iam::123456789012:role/ecsInfrastructureRole",
            "instanceLaunchTemplate": {
                "ec2InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/ecsInstanceRole",
                "networkConfiguration": {"subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-0a1b2c3d"]},
                "instanceRequirements": {"vCpuCount": {"min": min_vcpus, "max": 16}, "memoryMiB": {"min": 4096}},
            },
        }}),
    )
}

fn cluster(ns: &str, refs: &[&str], strategy: Value) -> Value {
    let refs: Vec<Value> = refs.iter().map(|r| json!({"name": r})).collect();
    object(
        "EcsCluster",
        "main",
        json!({"clusterName": format!("{ns}-main"), "capacityProviderRefs": refs,
               "defaultCapacityProviderStrategy": strategy}),
    )
}

async fn apply(client: &kube::Client, ns: &str, obj: &Value) {
    let dynamic: kube::api::DynamicObject = serde_json::from_value(obj.clone()).expect("object");
    common::apply(client, ns, &dynamic, false).await.expect("apply");
}

/// The provider as ECS reports it (asked for within `cluster`), as JSON; None when ECS has
/// none or only an INACTIVE one.
async fn ecs_provider(name: &str, cluster: Option<&str>) -> Option<Value> {
    let answer = ecs_client()
        .describe_capacity_providers()
        .capacity_providers(name)
        .set_cluster(cluster.map(str::to_owned))
        .send()
        .await;
    // NB: a deleted cluster holds no providers.
    let out = match answer {
        Err(e) if aws_sdk_ecs::error::ProvideErrorMetadata::code(&e) == Some("ClusterNotFoundException") => {
            return None;
        }
        other => other.expect("describe capacity providers"),
    };
    let provider = out.capacity_providers().first()?;
    let json: Value = ecs_operator::ecs::wire::from_sdk(provider).expect("provider JSON");
    (json["status"] != "INACTIVE").then_some(json)
}

/// The capacity providers ECS associates with a cluster, and its default strategy's.
async fn ecs_attachments(cluster: &str) -> (Vec<String>, Vec<String>) {
    let out = ecs_client()
        .describe_clusters()
        .clusters(cluster)
        .send()
        .await
        .expect("describe clusters");
    let c = out.clusters().first().expect("a cluster");
    let mut providers = c.capacity_providers().to_vec();
    providers.sort();
    let strategy = c
        .default_capacity_provider_strategy()
        .iter()
        .map(|i| i.capacity_provider().to_string())
        .collect();
    (providers, strategy)
}

async fn cluster_gone_from_ecs(name: &str) -> bool {
    let out = ecs_client()
        .describe_clusters()
        .clusters(name)
        .send()
        .await
        .expect("describe clusters");
    out.clusters().iter().all(|c| c.status() == Some("INACTIVE"))
}

#[tokio::test]
async fn two_kinds_of_provider_attach_change_in_place_carry_a_service_and_leave_nothing() {
    let client = admin_client().await;
    let ns = namespace(&client, "cp-both").await;
    let providers: Api<EcsCapacityProvider> = Api::namespaced(client.clone(), &ns);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let services: Api<EcsService> = Api::namespaced(client.clone(), &ns);
    let (asg, mi, main) = (format!("{ns}-asg"), format!("{ns}-mi"), format!("{ns}-main"));
    let _operator = Operator::start(&ns);

    // All at once, as `kubectl apply -f dir/` does: the cluster is made first, the Managed
    // Instances provider in it, and the cluster attaches both once they are Ready.
    let strategy = json!([{"capacityProvider": mi, "weight": 1}]);
    apply(&client, &ns, &cluster(&ns, &["asg", "mi"], strategy)).await;
    apply(&client, &ns, &asg_provider("asg", &asg, 90)).await;
    apply(&client, &ns, &managed_instances_provider("mi", &mi, 2)).await;
    let asg_obj = ready(&providers, "asg", 60).await;
    let mi_obj = ready(&providers, "mi", 60).await;
    ready(&clusters, "main", 60).await;

    let (attached, default_strategy) = ecs_attachments(&main).await;
    assert_eq!(
        attached,
        vec![asg.clone(), mi.clone()],
        "ECS associates both with the cluster"
    );
    assert_eq!(default_strategy, vec![mi.clone()]);
    let mi_status = mi_obj.status.expect("status");
    assert_eq!(mi_status.provider_type.as_deref(), Some("MANAGED_INSTANCES"));
    assert_eq!(mi_status.cluster.as_deref(), Some(main.as_str()));
    assert_eq!(mi_status.status.as_deref(), Some("ACTIVE"));
    assert!(mi_status.capacity_provider_arn.is_some_and(|a| a.contains(&mi)));
    assert_eq!(
        asg_obj.status.and_then(|s| s.provider_type).as_deref(),
        Some("EC2_AUTOSCALING")
    );
    let clusters_of = |p: EcsCapacityProvider| p.status.map(|s| s.clusters).unwrap_or_default();
    let asg_users = wait_for("the ASG provider's clusters in status", 30, || async {
        let users = clusters_of(providers.get("asg").await.ok()?);
        (!users.is_empty()).then_some(users)
    })
    .await;
    assert_eq!(asg_users, vec![main.clone()]);

    // Idle: resyncs read, nothing is written.
    let before = ecs_calls(&ns);
    more_calls(&ns, "DescribeCapacityProviders", 6).await;
    more_calls(&ns, "DescribeClusters", 3).await;
    assert_eq!(ecs_writes(&ecs_calls(&ns)), ecs_writes(&before), "{:?}", ecs_calls(&ns));

    // In place: a new target capacity, new instance requirements: one UpdateCapacityProvider each.
    apply(&client, &ns, &asg_provider("asg", &asg, 75)).await;
    ready(&providers, "asg", 60).await;
    let seen = ecs_provider(&asg, None).await.expect("the ASG provider");
    assert_eq!(
        seen["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"], 75,
        "{seen}"
    );
    apply(&client, &ns, &managed_instances_provider("mi", &mi, 4)).await;
    ready(&providers, "mi", 60).await;
    let seen = ecs_provider(&mi, Some(&main))
        .await
        .expect("the Managed Instances provider");
    let requirements = &seen["managedInstancesProvider"]["instanceLaunchTemplate"]["instanceRequirements"];
    assert_eq!(requirements["vCpuCount"]["min"], 4, "{seen}");
    let calls = ecs_calls(&ns);
    assert_eq!(calls_of(&calls, "UpdateCapacityProvider"), 2, "{calls:?}");
    assert_eq!(calls_of(&calls, "CreateCapacityProvider"), 2, "{calls:?}");
    event(
        &client,
        &ns,
        "asg",
        "Updated",
        "autoScalingGroupProvider.managedScaling",
    )
    .await;

    // A change while ECS is still updating waits for it instead of drawing
    // UpdateInProgressException: one more UpdateCapacityProvider per change, no more.
    endpoint_control("/_ecs_operator/provider-timing", json!({"seconds": 4}));
    apply(&client, &ns, &asg_provider("asg", &asg, 60)).await;
    wait_condition(&providers, "asg", "Reconciling", "True", Some("Updating"), 30).await;
    apply(&client, &ns, &asg_provider("asg", &asg, 50)).await;
    wait_condition(&providers, "asg", "Reconciling", "True", Some("WaitingForUpdate"), 30).await;
    ready(&providers, "asg", 60).await;
    endpoint_control("/_ecs_operator/provider-timing", json!({"seconds": 1}));
    let seen = ecs_provider(&asg, None).await.expect("the ASG provider");
    assert_eq!(
        seen["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"], 50,
        "{seen}"
    );
    assert_eq!(calls_of(&ecs_calls(&ns), "UpdateCapacityProvider"), 4);

    // A service placed on the ASG provider.
    apply(
        &client,
        &ns,
        &object(
            "EcsTaskDefinition",
            "web",
            json!({"family": format!("{ns}-web"), "requiresCompatibilities": ["EC2"],
                   "containerDefinitions": [{"name": "app", "image": "nginx:1.27", "memory": 128}]}),
        ),
    )
    .await;
    apply(
        &client,
        &ns,
        &object(
            "EcsService",
            "web",
            json!({"clusterRef": {"name": "main"}, "taskDefinitionRef": {"name": "web"}, "desiredCount": 1,
                   "capacityProviderStrategy": [{"capacityProvider": asg, "weight": 1}]}),
        ),
    )
    .await;
    ready(&services, "web", 90).await;
    let service = ecs_client()
        .describe_services()
        .cluster(&main)
        .services("web")
        .send()
        .await
        .expect("describe services");
    let placed = service.services()[0].capacity_provider_strategy()[0].capacity_provider();
    assert_eq!(placed, asg);

    // Everything at once: services go first, then the providers and the cluster, in the
    // order ECS lets them.
    delete_namespace(&client, &ns).await;
    wait_for("nothing left in ECS", 180, || async {
        let left = ecs_provider(&asg, None).await.is_some()
            || ecs_provider(&mi, Some(&main)).await.is_some()
            || !cluster_gone_from_ecs(&main).await;
        (!left).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_provider_a_cluster_lists_waits_for_the_cluster_to_let_go() {
    let client = admin_client().await;
    let ns = namespace(&client, "cp-first").await;
    let providers: Api<EcsCapacityProvider> = Api::namespaced(client.clone(), &ns);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let (asg, mi, main) = (format!("{ns}-asg"), format!("{ns}-mi"), format!("{ns}-main"));
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns, &["asg"], json!([]))).await;
    apply(&client, &ns, &asg_provider("asg", &asg, 100)).await;
    apply(&client, &ns, &managed_instances_provider("mi", &mi, 2)).await;
    ready(&providers, "asg", 60).await;
    ready(&providers, "mi", 60).await;
    ready(&clusters, "main", 60).await;
    assert_eq!(ecs_attachments(&main).await.0, vec![asg.clone(), mi.clone()]);

    // The ASG provider is deleted while the cluster still lists it: it waits, naming the cluster.
    providers.delete("asg", &DeleteParams::default()).await.expect("delete");
    let (_, message) = wait_condition(&providers, "asg", "Ready", "False", Some("DeletionBlocked"), 30).await;
    assert!(message.contains(&format!("EcsCluster {ns}/main")), "{message}");
    assert!(
        ecs_provider(&asg, None).await.is_some(),
        "still in ECS while the cluster uses it"
    );

    // The cluster lets go: one PutClusterCapacityProviders, then the provider goes.
    let puts = calls_of(&ecs_calls(&ns), "PutClusterCapacityProviders");
    apply(&client, &ns, &cluster(&ns, &[], json!([]))).await;
    gone(&providers, "asg", 60).await;
    assert!(ecs_provider(&asg, None).await.is_none(), "deleted in ECS");
    assert_eq!(calls_of(&ecs_calls(&ns), "PutClusterCapacityProviders"), puts + 1);

    // The Managed Instances provider, which the cluster does not list, goes by itself;
    // ECS takes it off the cluster, and the cluster does not fight for or against it.
    providers.delete("mi", &DeleteParams::default()).await.expect("delete");
    gone(&providers, "mi", 60).await;
    assert!(ecs_provider(&mi, Some(&main)).await.is_none());
    assert!(ecs_attachments(&main).await.0.is_empty());
    ready(&clusters, "main", 30).await;
    assert_eq!(calls_of(&ecs_calls(&ns), "PutClusterCapacityProviders"), puts + 1);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_cluster_deleted_first_waits_for_its_managed_instances_provider() {
    let client = admin_client().await;
    let ns = namespace(&client, "cp-cluster-first").await;
    let providers: Api<EcsCapacityProvider> = Api::namespaced(client.clone(), &ns);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let (asg, mi, main) = (format!("{ns}-asg"), format!("{ns}-mi"), format!("{ns}-main"));
    let _operator = Operator::start(&ns);
    apply(&client, &ns, &cluster(&ns, &["asg", "mi"], json!([]))).await;
    apply(&client, &ns, &asg_provider("asg", &asg, 100)).await;
    apply(&client, &ns, &managed_instances_provider("mi", &mi, 2)).await;
    ready(&clusters, "main", 60).await;

    // ECS refuses to delete a cluster that holds a Managed Instances provider.
    clusters.delete("main", &DeleteParams::default()).await.expect("delete");
    let (_, message) = wait_condition(&clusters, "main", "Ready", "False", Some("DeletionBlocked"), 30).await;
    assert!(message.contains(&mi), "{message}");
    assert!(!cluster_gone_from_ecs(&main).await);

    // Its provider goes (the cluster that listed it is being deleted), then the cluster.
    providers.delete("mi", &DeleteParams::default()).await.expect("delete");
    gone(&providers, "mi", 60).await;
    gone(&clusters, "main", 60).await;
    assert!(cluster_gone_from_ecs(&main).await);

    // Deleting the cluster let go of the ASG provider; it is still Ready and deletes freely.
    ready(&providers, "asg", 30).await;
    providers.delete("asg", &DeleteParams::default()).await.expect("delete");
    gone(&providers, "asg", 60).await;
    assert!(ecs_provider(&asg, None).await.is_none());
    assert!(ecs_provider(&mi, Some(&main)).await.is_none());
    delete_namespace(&client, &ns).await;
}

/// Another tool's Managed Instances provider in `cluster`, made behind the operator's back.
async fn foreign_managed_instances_provider(name: &str, cluster: &str) {
    let template = aws_sdk_ecs::types::InstanceLaunchTemplate::builder()
        .ec2_instance_profile_arn("arn:aws:iam::123456789012:instance-profile/ecsInstanceRole")
        .network_configuration(
            aws_sdk_ecs::types::ManagedInstancesNetworkConfiguration::builder()
                .subnets("subnet-0a1b2c3d")
                .build(),
        )
        .build()
        .expect("a launch template");
    let config = aws_sdk_ecs::types::CreateManagedInstancesProviderConfiguration::builder()
        .infrastructure_role_arn("arn:aws:iam::123456789012:role/ecsInfrastructureRole")
        .instance_launch_template(template)
        .build()
        .expect("a Managed Instances provider");
    ecs_client()
        .create_capacity_provider()
        .name(name)
        .cluster(cluster)
        .managed_instances_provider(config)
        .send()
        .await
        .expect("create capacity provider");
    wait_for("the other tool's provider ACTIVE", 30, || async {
        ecs_provider(name, Some(cluster))
            .await
            .filter(|p| p["status"] == "ACTIVE")
    })
    .await;
}

#[tokio::test]
async fn a_provider_named_rather_than_referred_to_is_waited_for() {
    let client = admin_client().await;
    let ns = namespace(&client, "cp-named").await;
    let providers: Api<EcsCapacityProvider> = Api::namespaced(client.clone(), &ns);
    let clusters: Api<EcsCluster> = Api::namespaced(client.clone(), &ns);
    let (spot, main) = (format!("{ns}-spot"), format!("{ns}-main"));
    let _operator = Operator::start(&ns);
    // The cluster first, naming a provider an EcsCapacityProvider makes a moment later.
    let named = |providers: Value| {
        object(
            "EcsCluster",
            "main",
            json!({"clusterName": main, "capacityProviders": providers,
                   "defaultCapacityProviderStrategy": [{"capacityProvider": spot, "weight": 1}]}),
        )
    };
    apply(&client, &ns, &named(json!(["FARGATE", spot]))).await;
    apply(&client, &ns, &asg_provider("spot", &spot, 100)).await;
    ready(&providers, "spot", 60).await;
    ready(&clusters, "main", 60).await;
    assert_eq!(
        ecs_attachments(&main).await,
        (vec!["FARGATE".to_string(), spot.clone()], vec![spot.clone()])
    );

    // Another tool's Managed Instances provider appears in the cluster: a change of the list
    // neither sends it (ECS would refuse) nor detaches it, and it is looked up once.
    let foreign = format!("{ns}-foreign");
    foreign_managed_instances_provider(&foreign, &main).await;
    apply(&client, &ns, &named(json!(["FARGATE", "FARGATE_SPOT", spot]))).await;
    let obj = ready(&clusters, "main", 60).await;
    let status = obj.status.expect("status");
    assert_eq!(status.managed_instances_providers, vec![foreign.clone()]);
    let mut expected = vec![
        "FARGATE".to_string(),
        "FARGATE_SPOT".to_string(),
        foreign.clone(),
        spot.clone(),
    ];
    expected.sort();
    assert_eq!(ecs_attachments(&main).await.0, expected);
    let puts = calls_of(&ecs_calls(&ns), "PutClusterCapacityProviders");
    more_calls(&ns, "DescribeClusters", 4).await;
    assert_eq!(
        calls_of(&ecs_calls(&ns), "PutClusterCapacityProviders"),
        puts,
        "no write at idle"
    );

    // References only: removing the last one detaches its provider and nothing else.
    apply(
        &client,
        &ns,
        &object(
            "EcsCluster",
            "main",
            json!({"clusterName": main, "capacityProviderRefs": [{"name": "spot"}]}),
        ),
    )
    .await;
    ready(&clusters, "main", 60).await;
    apply(
        &client,
        &ns,
        &object("EcsCluster", "main", json!({"clusterName": main})),
    )
    .await;
    ready(&clusters, "main", 60).await;
    wait_for("spot detached, the rest kept", 30, || async {
        let attached = ecs_attachments(&main).await.0;
        (!attached.contains(&spot) && attached.contains(&foreign)).then_some(())
    })
    .await;
    let _ = ecs_client()
        .delete_capacity_provider()
        .capacity_provider(&foreign)
        .cluster(&main)
        .send()
        .await;
    delete_namespace(&client, &ns).await;
}
