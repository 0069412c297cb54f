"""Detector3DTemplate: builds a detector's modules from MODEL config in OpenPCDet's topology order,
and owns post-processing (score threshold + NMS), recall records, the per-box feature hook used by
active learning, and checkpoint loading."""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ... import registry
from .. import post_processing as pp

_FAMILY = {'vfe': 'vfe', 'backbone_3d': 'backbone_3d', 'map_to_bev_module': 'map_to_bev',
           'backbone_2d': 'backbone_2d', 'dense_head': 'dense_head', 'roi_head': 'roi_head'}


class Detector3DTemplate(nn.Module):
    def __init__(self, model_cfg, num_class, dataset):
        super().__init__()
        self.model_cfg = model_cfg
        self.num_class = num_class
        self.dataset = dataset
        self.class_names = dataset.class_names
        self.register_buffer('global_step', torch.LongTensor(1).zero_())
        self.module_topology = ['vfe', 'backbone_3d', 'map_to_bev_module', 'pfe', 'backbone_2d',
                                'dense_head', 'point_head', 'roi_head']
        self._read_post_processing_cfg(model_cfg.get('POST_PROCESSING', None))

    # ------------------------------------------------------------------ config
    def _read_post_processing_cfg(self, cfg):
        """Read every POST_PROCESSING key now (config validation flags unread keys as typos)."""
        self.post_cfg = cfg
        if cfg is None:
            return
        self.recall_thresh_list = list(cfg.get('RECALL_THRESH_LIST', [0.3, 0.5, 0.7]))
        self.score_thresh = cfg.get('SCORE_THRESH', None)
        self.output_raw_score = cfg.get('OUTPUT_RAW_SCORE', False)
        self.eval_metric = cfg.get('EVAL_METRIC', 'kitti')
        # Active-learning hook: also return class probabilities and pooled features per kept box.
        self.return_box_features = bool(cfg.get('RETURN_BOX_FEATURES', False))
        nms = cfg.NMS_CONFIG
        self.nms_config = nms
        self.multi_classes_nms = nms.get('MULTI_CLASSES_NMS', False)
        pp.check_nms_type(nms.NMS_TYPE)
        _ = (nms.NMS_THRESH, nms.NMS_PRE_MAXSIZE, nms.NMS_POST_MAXSIZE)

    @property
    def mode(self):
        return 'TRAIN' if self.training else 'TEST'

    def update_global_step(self):
        self.global_step += 1

    # ------------------------------------------------------------------ building
    def build_networks(self):
        ds = self.dataset
        model_info_dict = {
            'module_list': [],
            'num_rawpoint_features': ds.point_feature_encoder.num_point_features,
            'num_point_features': ds.point_feature_encoder.num_point_features,
            'grid_size': ds.grid_size,
            'point_cloud_range': ds.point_cloud_range,
            'voxel_size': ds.voxel_size,
            'depth_downsample_factor': getattr(ds, 'depth_downsample_factor', None),
        }
        for module_name in self.module_topology:
            module, model_info_dict = getattr(self, 'build_%s' % module_name)(model_info_dict=model_info_dict)
            self.add_module(module_name, module)
        return model_info_dict['module_list']

    def _get_cls(self, key, module_name):
        name = self.model_cfg[key].NAME
        try:
            return registry.get(_FAMILY[module_name], name)
        except KeyError as e:
            raise KeyError(f'MODEL.{key}.NAME: {e.args[0]}') from None

    def build_vfe(self, model_info_dict):
        if self.model_cfg.get('VFE', None) is None:
            return None, model_info_dict
        vfe_module = self._get_cls('VFE', 'vfe')(
            model_cfg=self.model_cfg.VFE, num_point_features=model_info_dict['num_rawpoint_features'],
            point_cloud_range=model_info_dict['point_cloud_range'], voxel_size=model_info_dict['voxel_size'],
            grid_size=model_info_dict['grid_size'], depth_downsample_factor=model_info_dict['depth_downsample_factor'])
        model_info_dict['num_point_features'] = vfe_module.get_output_feature_dim()
        model_info_dict['module_list'].append(vfe_module)
        return vfe_module, model_info_dict

    def build_backbone_3d(self, model_info_dict):
        if self.model_cfg.get('BACKBONE_3D', None) is None:
            return None, model_info_dict
        module = self._get_cls('BACKBONE_3D', 'backbone_3d')(
            model_cfg=self.model_cfg.BACKBONE_3D, input_channels=model_info_dict['num_point_features'],
            grid_size=model_info_dict['grid_size'], voxel_size=model_info_dict['voxel_size'],
            point_cloud_range=model_info_dict['point_cloud_range'])
        model_info_dict['module_list'].append(module)
        model_info_dict['num_point_features'] = module.num_point_features
        model_info_dict['backbone_channels'] = getattr(module, 'backbone_channels', None)
        return module, model_info_dict

    def build_map_to_bev_module(self, model_info_dict):
        if self.model_cfg.get('MAP_TO_BEV', None) is None:
            return None, model_info_dict
        module = self._get_cls('MAP_TO_BEV', 'map_to_bev_module')(
            model_cfg=self.model_cfg.MAP_TO_BEV, grid_size=model_info_dict['grid_size'])
        model_info_dict['module_list'].append(module)
        model_info_dict['num_bev_features'] = module.num_bev_features
        return module, model_info_dict

    def build_pfe(self, model_info_dict):
        if self.model_cfg.get('PFE', None) is None:
            return None, model_info_dict
        raise NotImplementedError('MODEL.PFE (point feature extractor, PV-RCNN) is not provided by pcdet_ext')

    def build_backbone_2d(self, model_info_dict):
        if self.model_cfg.get('BACKBONE_2D', None) is None:
            return None, model_info_dict
        module = self._get_cls('BACKBONE_2D', 'backbone_2d')(
            model_cfg=self.model_cfg.BACKBONE_2D, input_channels=model_info_dict.get('num_bev_features', None))
        model_info_dict['module_list'].append(module)
        model_info_dict['num_bev_features'] = module.num_bev_features
        return module, model_info_dict

    def build_dense_head(self, model_info_dict):
        if self.model_cfg.get('DENSE_HEAD', None) is None:
            return None, model_info_dict
        head_cfg = self.model_cfg.DENSE_HEAD
        input_channels = model_info_dict['num_bev_features'] if 'num_bev_features' in model_info_dict \
            else head_cfg.INPUT_FEATURES
        module = self._get_cls('DENSE_HEAD', 'dense_head')(
            model_cfg=head_cfg, input_channels=input_channels,
            num_class=self.num_class if not head_cfg.get('CLASS_AGNOSTIC', False) else 1,
            class_names=self.class_names, grid_size=model_info_dict['grid_size'],
            point_cloud_range=model_info_dict['point_cloud_range'],
            predict_boxes_when_training=bool(self.model_cfg.get('ROI_HEAD', False)),
            voxel_size=model_info_dict.get('voxel_size', False))
        model_info_dict['module_list'].append(module)
        return module, model_info_dict

    def build_point_head(self, model_info_dict):
        if self.model_cfg.get('POINT_HEAD', None) is None:
            return None, model_info_dict
        raise NotImplementedError('MODEL.POINT_HEAD is not provided by pcdet_ext')

    def build_roi_head(self, model_info_dict):
        if self.model_cfg.get('ROI_HEAD', None) is None:
            return None, model_info_dict
        module = self._get_cls('ROI_HEAD', 'roi_head')(
            model_cfg=self.model_cfg.ROI_HEAD, input_channels=model_info_dict['num_point_features'],
            backbone_channels=model_info_dict.get('backbone_channels', None),
            point_cloud_range=model_info_dict['point_cloud_range'], voxel_size=model_info_dict['voxel_size'],
            num_class=self.num_class if not self.model_cfg.ROI_HEAD.get('CLASS_AGNOSTIC', False) else 1)
        model_info_dict['module_list'].append(module)
        return module, model_info_dict

    def forward(self, **kwargs):
        raise NotImplementedError

    # ------------------------------------------------------------------ inference
    def forward_with_box_features(self, batch_dict):
        """Eval-mode forward whose pred_dicts also carry, per kept box, 'pred_cls_probs' (num_class)
        and 'pred_box_features' (C, the BEV feature map sampled at the box centre), and per frame
        'frame_feature' (C, the BEV map mean-pooled). See docs/models.md."""
        if self.post_cfg is None:
            raise KeyError('forward_with_box_features needs MODEL.POST_PROCESSING')
        prev, was_training = self.return_box_features, self.training
        self.return_box_features = True
        # Inference path even if the caller left the model in train mode. A model already in eval
        # mode is left untouched, so layers switched on on purpose (MC-dropout) stay on.
        if was_training:
            self.eval()
        try:
            with torch.no_grad():
                return self.forward(batch_dict)
        finally:
            self.return_box_features = prev
            if was_training:
                self.train()

    def _bev_features_at(self, batch_dict, index, boxes):
        """Bilinear sample of spatial_features_2d[index] at the BEV centres of boxes (K, 7+) -> (K, C)."""
        fmap = batch_dict['spatial_features_2d'][index:index + 1]
        pc_range = self.dataset.point_cloud_range
        gx = (boxes[:, 0] - pc_range[0]) / (pc_range[3] - pc_range[0]) * 2 - 1
        gy = (boxes[:, 1] - pc_range[1]) / (pc_range[4] - pc_range[1]) * 2 - 1
        grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2).to(fmap.dtype)
        # align_corners=False: -1/+1 are the outer edges of the map, i.e. the point-cloud range.
        out = F.grid_sample(fmap, grid, mode='bilinear', padding_mode='border', align_corners=False)
        return out[0, :, 0, :].t().contiguous()

    def post_processing(self, batch_dict):
        """batch_dict with batch_cls_preds (B, N, C) and batch_box_preds (B, N, 7) ->
        (pred_dicts, recall_dict); each pred_dict has pred_boxes (K, 7), pred_scores (K,), pred_labels
        (K,) 1-based, plus the box-feature fields when return_box_features is on."""
        if self.post_cfg is None:
            raise KeyError('MODEL.POST_PROCESSING is required for inference')
        batch_size = int(batch_dict['batch_size'])
        recall_dict = {}
        pred_dicts = []
        for index in range(batch_size):
            if batch_dict.get('batch_index', None) is not None:
                assert batch_dict['batch_box_preds'].shape.__len__() == 2
                batch_mask = (batch_dict['batch_index'] == index)
            else:
                assert batch_dict['batch_box_preds'].shape.__len__() == 3
                batch_mask = index
            box_preds = batch_dict['batch_box_preds'][batch_mask]
            src_box_preds = box_preds
            if isinstance(batch_dict['batch_cls_preds'], list):
                raise NotImplementedError('multi-head class predictions are not supported')
            cls_preds = batch_dict['batch_cls_preds'][batch_mask]
            src_cls_preds = cls_preds
            if not batch_dict['cls_preds_normalized']:
                cls_preds = torch.sigmoid(cls_preds)

            if self.multi_classes_nms:
                final_scores, final_labels, final_boxes, selected = pp.multi_classes_nms(
                    cls_scores=cls_preds, box_preds=box_preds, nms_config=self.nms_config,
                    score_thresh=self.score_thresh)
                final_labels = final_labels + 1
                if self.output_raw_score:
                    final_scores = src_cls_preds[selected, final_labels - 1]
            else:
                max_scores, label_preds = torch.max(cls_preds, dim=-1)
                if batch_dict.get('has_class_labels', False):
                    label_key = 'roi_labels' if 'roi_labels' in batch_dict else 'batch_pred_labels'
                    label_preds = batch_dict[label_key][index]
                else:
                    label_preds = label_preds + 1
                selected, selected_scores = pp.class_agnostic_nms(
                    box_scores=max_scores, box_preds=box_preds, nms_config=self.nms_config,
                    score_thresh=self.score_thresh)
                if self.output_raw_score:
                    selected_scores = torch.max(src_cls_preds, dim=-1)[0][selected]
                final_scores = selected_scores
                final_labels = label_preds[selected]
                final_boxes = box_preds[selected]

            recall_dict = pp.generate_recall_record(
                box_preds=final_boxes if 'rois' not in batch_dict else src_box_preds, recall_dict=recall_dict,
                batch_index=index, data_dict=batch_dict, thresh_list=self.recall_thresh_list)
            record = {'pred_boxes': final_boxes, 'pred_scores': final_scores, 'pred_labels': final_labels}
            if self.return_box_features:
                record['pred_cls_probs'] = cls_preds[selected]
                if 'spatial_features_2d' in batch_dict:
                    record['pred_box_features'] = self._bev_features_at(batch_dict, index, final_boxes)
                    record['frame_feature'] = batch_dict['spatial_features_2d'][index].mean(dim=(1, 2))
            pred_dicts.append(record)
        return pred_dicts, recall_dict

    # ------------------------------------------------------------------ checkpoints
    def _load_state_dict(self, model_state_disk, *, strict=True):
        """Load matching weights; sparse-conv kernels saved in spconv 1.x layout (kz, ky, kx, in, out)
        are permuted to ours (out, kz, ky, kx, in). Returns (state_dict, names updated)."""
        state_dict = self.state_dict()
        update = {}
        for key, val in model_state_disk.items():
            if key not in state_dict:
                continue
            if state_dict[key].shape != val.shape and val.dim() == 5:
                for cand in (val.permute(4, 0, 1, 2, 3), val.transpose(-1, -2)):
                    if cand.shape == state_dict[key].shape:
                        val = cand.contiguous()
                        break
            if state_dict[key].shape == val.shape:
                update[key] = val
        if strict:
            self.load_state_dict(update)
        else:
            state_dict.update(update)
            self.load_state_dict(state_dict)
        return state_dict, update

    def load_params_from_file(self, filename, logger=None, to_cpu=False, pre_trained_path=None):
        if not os.path.isfile(filename):
            raise FileNotFoundError(f'checkpoint {filename} does not exist')
        log = logger.info if logger is not None else (lambda *a: None)
        from ...runtime.checkpoint import weights_device_name  # at call time: runtime imports the models
        log('==> Loading parameters from checkpoint %s to %s' % (filename, weights_device_name(self)))
        loc = torch.device('cpu') if to_cpu or not torch.cuda.is_available() else None
        checkpoint = torch.load(filename, map_location=loc, weights_only=False)
        model_state_disk = checkpoint['model_state'] if 'model_state' in checkpoint else checkpoint
        if pre_trained_path is not None:
            pretrain = torch.load(pre_trained_path, map_location=loc, weights_only=False)
            model_state_disk.update(pretrain.get('model_state', pretrain))
        log('==> Checkpoint trained from version: %s' % checkpoint.get('version', None))
        state_dict, update = self._load_state_dict(model_state_disk, strict=False)
        for key in state_dict:
            if key not in update:
                log('Not updated weight %s: %s' % (key, str(state_dict[key].shape)))
        log('==> Done (loaded %d/%d)' % (len(update), len(state_dict)))
        return len(update), len(state_dict)

    def load_params_with_optimizer(self, filename, to_cpu=False, optimizer=None, logger=None):
        if not os.path.isfile(filename):
            raise FileNotFoundError(f'checkpoint {filename} does not exist')
        log = logger.info if logger is not None else (lambda *a: None)
        loc = torch.device('cpu') if to_cpu or not torch.cuda.is_available() else None
        checkpoint = torch.load(filename, map_location=loc, weights_only=False)
        epoch = checkpoint.get('epoch', -1)
        it = checkpoint.get('it', 0.0)
        self._load_state_dict(checkpoint['model_state'], strict=True)
        if optimizer is not None and checkpoint.get('optimizer_state', None) is not None:
            log('==> Loading optimizer parameters from checkpoint %s' % filename)
            optimizer.load_state_dict(checkpoint['optimizer_state'])
        log('==> Done')
        return it, epoch
