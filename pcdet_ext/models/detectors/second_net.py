"""SECOND (Yan et al. 2018): MeanVFE -> sparse 3D backbone -> BEV -> 2D backbone -> anchor head."""
from ...registry import register
from .detector3d_template import Detector3DTemplate


class _SingleStageDetector(Detector3DTemplate):
    def __init__(self, model_cfg, num_class, dataset):
        super().__init__(model_cfg=model_cfg, num_class=num_class, dataset=dataset)
        self.module_list = self.build_networks()

    def forward(self, batch_dict):
        for cur_module in self.module_list:
            batch_dict = cur_module(batch_dict)
        if self.training:
            loss, tb_dict, disp_dict = self.get_training_loss()
            return {'loss': loss}, tb_dict, disp_dict
        return self.post_processing(batch_dict)

    def get_training_loss(self):
        loss_rpn, tb_dict = self.dense_head.get_loss()
        tb_dict = {'loss_rpn': loss_rpn.item(), **tb_dict}
        return loss_rpn, tb_dict, {}


@register('detector')
class SECONDNet(_SingleStageDetector):
    pass
