# The control group: a fixed-size autoscaling group (it replaces a dead host,
# it never scales) of Nomad+Consul servers that are also Nomad clients of node
# class "control". The control plane, syncer, NATS and the observability jobs
# are placed here by Nomad.

resource "aws_launch_template" "control" {
  name_prefix            = "${var.name}-control-"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  user_data              = base64encode(var.user_data)
  vpc_security_group_ids = [var.security_group_id]

  iam_instance_profile {
    name = var.instance_profile_name
  }

  # IMDSv2 only; one hop so containers on a bridge network cannot reach it.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    # opensandbox-consul-server is what Consul cloud auto-join looks for.
    tags = merge(var.tags, {
      Name                      = "${var.name}-control"
      opensandbox-role          = "control"
      opensandbox-consul-server = var.name
    })
  }

  tags = var.tags
}

resource "aws_autoscaling_group" "control" {
  name                = "${var.name}-control"
  min_size            = var.server_count
  max_size            = var.server_count
  desired_capacity    = var.server_count
  vpc_zone_identifier = var.subnet_ids
  target_group_arns   = var.target_group_arns
  # EC2 health only: a host without a control-plane allocation fails the load
  # balancer check by design and must not be replaced for it.
  health_check_type         = "EC2"
  health_check_grace_period = 300

  launch_template {
    id      = aws_launch_template.control.id
    version = aws_launch_template.control.latest_version
  }

  # Replacing servers one at a time keeps Raft and JetStream quorum.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 66
      instance_warmup        = 600
    }
  }

  dynamic "tag" {
    for_each = var.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false # the launch template tags instances
    }
  }
}
